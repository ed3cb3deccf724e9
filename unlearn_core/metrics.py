"""Unlearning metrics, as defined in shared/specs/baselines-and-metrics.md.

All accuracies and attack rates are in percent. The pure functions take
numpy arrays so they can be checked on hand-made inputs;
:func:`evaluate_model` applies them to a model, a data set and a forget split.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from unlearn_core.data import DatasetBundle
from unlearn_core.errors import DivergenceError
from unlearn_core.forget import ForgetSplit
# The metric table lives in unlearn_core.report (the store reads it without importing torch); re-exported here.
from unlearn_core.report import HEADLINE_METRICS, METRIC_INFO, MODEL_METRICS, RUN_METRICS, MetricInfo  # noqa: F401

MIA_MAX_PER_SIDE = 2000

EPS = 1e-12


def accuracy_percent(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Share of predictions equal to the labels, in %; NaN for an empty set."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if labels.size == 0:
        return float("nan")
    return float(np.mean(predictions == labels) * 100.0)


def per_class_accuracy(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Accuracy of each class's samples, in %; NaN for a class with no samples."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return [accuracy_percent(predictions[labels == c], labels[labels == c]) for c in range(num_classes)]


def mean_class_accuracy(predictions: np.ndarray, labels: np.ndarray, classes) -> float:
    """Mean over ``classes`` of each class's accuracy (Acc_r), in %; classes without samples are skipped."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    values = [accuracy_percent(predictions[labels == c], labels[labels == c]) for c in classes
              if np.any(labels == c)]
    return float(np.mean(values)) if values else float("nan")


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a probability matrix."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0)
    return -np.sum(probs * np.log(probs), axis=1)


def true_class_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probability each row gives its true label."""
    probs = np.asarray(probs)
    return probs[np.arange(len(probs)), np.asarray(labels)]


def modified_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Modified prediction entropy (Song & Mittal, USENIX Security 2021) of each row.

    Mentr(p, y) = -(1 - p_y) log(p_y) - sum_{i != y} p_i log(1 - p_i).
    Unlike the entropy it knows the label: a confident *wrong* prediction
    scores high, a confident right one low. (SalUn's release computes it with a
    sign slip in the second term's logarithm; this is the paper's formula.)
    """
    probs = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0 - EPS)
    rows = np.arange(len(probs))
    labels = np.asarray(labels)
    p_true = probs[rows, labels]
    others = -probs * np.log(1.0 - probs)
    others[rows, labels] = 0.0
    return -(1.0 - p_true) * np.log(p_true) + others.sum(axis=1)


def _svc_attack_features(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The per-sample features of SalUn's SVC_MIA attacks, each a 2-D array (samples x features)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    return {
        "correctness": (probs.argmax(1) == labels).astype(np.float64)[:, None],
        "confidence": true_class_confidence(probs, labels)[:, None],
        "entropy": entropy(probs)[:, None],
        "m_entropy": modified_entropy(probs, labels)[:, None],
        "prob": probs,
    }


SVC_ATTACKS = ("correctness", "confidence", "entropy", "m_entropy", "prob")


def _svc_nonmember_share(members: np.ndarray, nonmembers: np.ndarray, targets: np.ndarray) -> float:
    """Fit SalUn's attack (``SVC(C=3, kernel="rbf", gamma="auto")``, members 1 vs non-members 0) and return the
    % of ``targets`` it predicts non-member (SalUn's ``SVC_fit_predict`` on ``target_test``)."""
    from sklearn.svm import SVC

    x = np.vstack([members, nonmembers])
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = SVC(C=3, kernel="rbf", gamma="auto").fit(x, y)
    return float(np.mean(attack.predict(targets) == 0) * 100.0)


def mia_svc_attacks(member_probs, member_labels, nonmember_probs, nonmember_labels, target_probs, target_labels,
                    seed=0, attacks=SVC_ATTACKS) -> dict[str, float]:
    """One draw of SalUn's ``SVC_MIA``: one RBF SVC (C=3, gamma="auto") per feature, % of targets called NON-members.

    Source: Jia et al., "Model Sparsity Can Simplify Machine Unlearning"
    (NeurIPS 2023) and Fan et al., SalUn (ICLR 2024), public releases
    (``evaluation/SVC_MIA.py``, ``SVC_MIA`` and ``SVC_fit_predict``). Members
    are remaining training samples, non-members test samples, in equal
    numbers n = min(#members, #non-members, ``MIA_MAX_PER_SIDE``), each side
    drawn without replacement by ``numpy.random.default_rng(seed)`` (``seed``
    is an int or a sequence of ints). Each attack is fit on one feature of the
    softmax output (``correctness`` = prediction right, ``confidence`` =
    probability of the true class, ``entropy``, ``m_entropy`` = the modified
    entropy, ``prob`` = the whole probability vector) and applied to the
    target (forget) samples. The value is the share of targets predicted
    non-member: higher means the forget set looks less trained-on. The
    papers' "MIA-efficacy" column is the ``confidence`` attack. On random
    forgetting one draw can move this by tens of points; the reported value
    is the mean over draws (:func:`mia_svc_draws`).
    """
    if len(member_labels) == 0 or len(nonmember_labels) == 0 or len(target_labels) == 0:
        return {name: float("nan") for name in attacks}
    rng = np.random.default_rng(seed)
    n = min(len(member_labels), len(nonmember_labels), MIA_MAX_PER_SIDE)
    member_pick = rng.choice(len(member_labels), n, replace=False)
    nonmember_pick = rng.choice(len(nonmember_labels), n, replace=False)
    members = _svc_attack_features(np.asarray(member_probs)[member_pick], np.asarray(member_labels)[member_pick])
    nonmembers = _svc_attack_features(np.asarray(nonmember_probs)[nonmember_pick],
                                      np.asarray(nonmember_labels)[nonmember_pick])
    targets = _svc_attack_features(target_probs, target_labels)
    return {name: _svc_nonmember_share(members[name], nonmembers[name], targets[name]) for name in attacks}


MIA_SVC_DRAWS = 10


def mia_svc_draws(member_probs, member_labels, nonmember_probs, nonmember_labels, target_probs, target_labels,
                  seed: int = 0, draws: int = MIA_SVC_DRAWS, attacks=SVC_ATTACKS) -> dict[str, list[float]]:
    """Each attack of :func:`mia_svc_attacks` over ``draws`` independent member/non-member draws.

    Draw k uses ``default_rng((seed, k))``, so the draws are seeded by the
    run's seed and differ from each other. Returns, per attack, the list of
    the ``draws`` values (in %, share of targets called non-member).
    """
    values: dict[str, list[float]] = {name: [] for name in attacks}
    for k in range(int(draws)):
        result = mia_svc_attacks(member_probs, member_labels, nonmember_probs, nonmember_labels, target_probs,
                                 target_labels, seed=(int(seed), k), attacks=attacks)
        for name in attacks:
            values[name].append(result[name])
    return values


def mean_ci95(values) -> tuple[float, float, int]:
    """Mean of the finite ``values``, the half-width of its 95 % Student-t interval, and how many were used.

    Half-width = t_{0.975, k-1} * s / sqrt(k), s the sample standard
    deviation (ddof=1) of the k finite values: the interval for the mean
    over draws, not the spread of one draw. NaN half-width for k < 2, NaN
    mean for k = 0.
    """
    from scipy.stats import t

    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    k = len(finite)
    if k == 0:
        return float("nan"), float("nan"), 0
    if k == 1:
        return float(finite[0]), float("nan"), 1
    half = float(t.ppf(0.975, k - 1) * finite.std(ddof=1) / math.sqrt(k))
    return float(finite.mean()), half, k


def mia_svc_salun(member_probs, member_labels, nonmember_probs, nonmember_labels, target_probs, target_labels,
                  attacks=("confidence",)) -> dict[str, float]:
    """SalUn's exact sampling for ``SVC_MIA``: the FIRST len(non-members) members and ALL non-members.

    Source: SalUn's release, ``main_forget.py`` / ``main_random.py``
    (``shadow_train = Subset(retain_dataset, range(len(test)))``,
    ``shadow_test`` = its test loader, from which ``dataset.py`` removes a
    forgotten class; ``target_test`` = the forget set). Members are taken in
    the order given (the remaining samples in training-set order), with no
    cap and no random draw, so the value is one fixed draw: it is reported
    beside the mean over draws, never instead of it. Same attacks and
    direction as :func:`mia_svc_attacks`. Without the cap the SVC's cost
    grows with the square of 2 x len(test) (docs/METRICS.md, "Cost").
    """
    if len(member_labels) == 0 or len(nonmember_labels) == 0 or len(target_labels) == 0:
        return {name: float("nan") for name in attacks}
    n = min(len(member_labels), len(nonmember_labels))
    members = _svc_attack_features(np.asarray(member_probs)[:n], np.asarray(member_labels)[:n])
    nonmembers = _svc_attack_features(nonmember_probs, nonmember_labels)
    targets = _svc_attack_features(target_probs, target_labels)
    return {name: _svc_nonmember_share(members[name], nonmembers[name], targets[name]) for name in attacks}


def mia_svc(member_probs, member_labels, nonmember_probs, nonmember_labels, target_probs, target_labels,
            seed: int = 0) -> float:
    """SVC "MIA-efficacy" (SalUn, l1-sparse) of one draw: the confidence attack of :func:`mia_svc_attacks`.

    % of forget samples an RBF SVC (C=3) on the true-class confidence alone
    calls non-members, trained on remaining (member) vs test (non-member)
    samples in equal numbers. Higher = the forget set looks less trained-on;
    the target is the retrained model's value. The report's ``MIA_svc`` is
    the mean of this over :data:`MIA_SVC_DRAWS` draws.
    """
    return mia_svc_attacks(member_probs, member_labels, nonmember_probs, nonmember_labels, target_probs,
                           target_labels, seed, attacks=("confidence",))["confidence"]


def mia_entropy(member_probs, nonmember_probs, target_probs, seed: int = 0) -> float:
    """Entropy MIA (NatMU, SSD, Bad Teacher): % of target samples a logistic attack calls MEMBERS.

    Source: Chundawat et al. (AAAI 2023) as used by Foster et al., SSD
    (AAAI 2024) and Zhou et al., NatMU (TPAMI 2025), public releases
    (``get_membership_attack_prob``). Feature: the raw Shannon entropy
    H(p) = -sum_i p_i ln p_i of the softmax output (no log transform). A
    logistic regression with balanced class weights learns remaining training
    samples (members, 1) against test samples (non-members, 0) and is applied
    to the forget samples; the value is the share predicted member. Both
    releases pass the whole test set as non-members (the report's
    ``MIA_entropy``; ``MIA_entropy_retain_test`` passes only the remaining
    classes' test samples). Members
    are subsampled with ``seed`` to at most 4 x ``MIA_MAX_PER_SIDE``. Lower =
    the forget set looks less trained-on; the target is the retrained
    model's value, not 0 or 100.
    """
    from sklearn.linear_model import LogisticRegression

    members, nonmembers = entropy(member_probs), entropy(nonmember_probs)
    target = entropy(target_probs)
    if len(members) == 0 or len(nonmembers) == 0 or len(target) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    members = members[rng.choice(len(members), min(len(members), 4 * MIA_MAX_PER_SIDE), replace=False)]
    x = np.concatenate([members, nonmembers])[:, None]
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = LogisticRegression(class_weight="balanced", random_state=seed).fit(x, y)
    return float(np.mean(attack.predict(target[:, None]) == 1) * 100.0)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Mean Jensen-Shannon divergence (nats, in [0, ln 2]) between matching rows of two softmax matrices."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0)
    q = np.clip(np.asarray(q, dtype=np.float64), EPS, 1.0)
    if len(p) == 0:
        return float("nan")
    m = 0.5 * (p + q)
    kl_pm = np.sum(p * np.log(p / m), axis=1)
    kl_qm = np.sum(q * np.log(q / m), axis=1)
    return float(np.mean(np.maximum(0.5 * (kl_pm + kl_qm), 0.0)))


AVG_GAP_KEYS = ("TA", "RA", "FA", "MIA_entropy")
# NatMU's class-wise tables take TA over the remaining classes' test samples (the forgotten classes' test accuracy
# is Acc_f, reported apart), so the gap is not charged twice for the class that should be gone.
AVG_GAP_KEYS_CLASSWISE = ("TA_retain", "RA", "FA", "MIA_entropy")


def avg_gap(unlearned: dict, retrained: dict, keys=AVG_GAP_KEYS) -> float:
    """Avg. Gap (NatMU): mean over ``keys`` of |unlearned - retrained|, in points.

    Sample forgetting: TA, RA, FA and MIA_entropy. Class forgetting passes
    :data:`AVG_GAP_KEYS_CLASSWISE`, where TA is measured on the remaining
    classes' test samples (``TA_retain``), as NatMU's class-wise tables do.
    Missing or NaN values are skipped.
    """
    gaps = [abs(unlearned[k] - retrained[k]) for k in keys
            if unlearned.get(k) is not None and retrained.get(k) is not None
            and not (math.isnan(unlearned[k]) or math.isnan(retrained[k]))]
    return float(np.mean(gaps)) if gaps else float("nan")


def avg_gap_keys(split: ForgetSplit) -> tuple[str, ...]:
    """The Avg. Gap's terms for a forget split (see :func:`avg_gap`)."""
    return AVG_GAP_KEYS_CLASSWISE if split.is_classwise else AVG_GAP_KEYS


def rte(retrain_seconds: float, method_seconds: float) -> float:
    """Run-time efficiency: how many times faster than retraining the method is."""
    if method_seconds <= 0:
        return float("inf")
    return float(retrain_seconds / method_seconds)


def softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=1).numpy()


def model_outputs(model, bundle: DatasetBundle, split: ForgetSplit, device=None) -> dict[str, np.ndarray]:
    """Softmax outputs on the forget, remaining and test sets (what every metric needs)."""
    from unlearn_core.training import predict_logits

    forget = torch.as_tensor(split.forget_idx, dtype=torch.long)
    retain = torch.as_tensor(split.retain_idx, dtype=torch.long)
    outputs = {
        "forget": softmax(predict_logits(model, bundle.train_x[forget], device)),
        "retain": softmax(predict_logits(model, bundle.train_x[retain], device)),
        "test": softmax(predict_logits(model, bundle.test_x, device)),
    }
    if not all(np.isfinite(probs).all() for probs in outputs.values()):
        raise DivergenceError("the model's outputs are NaN or infinite (its weights diverged); "
                              "lower the learning rate and try again")
    return outputs


def evaluate_outputs(outputs: dict[str, np.ndarray], bundle: DatasetBundle, split: ForgetSplit,
                     seed: int = 0, svc_draws: int = MIA_SVC_DRAWS) -> dict:
    """Every per-model metric from precomputed softmax outputs (see :func:`model_outputs`).

    - ``FA``/``RA``/``TA``: accuracy on the forget set, the remaining training
      set and the whole test set.
    - ``TA_retain``: accuracy over the test samples outside the forget set's
      classes (equals TA for sample forgetting).
    - ``Acc_f``: test accuracy on what is forgotten; with several forgotten
      classes, the mean of their per-class accuracies (as the UNSC release
      reports), not pooled over samples. ``None`` for sample forgetting.
    - ``Acc_r``: mean per-class test accuracy of the remaining classes.
    - ``MIA_svc``: SalUn's MIA-efficacy (confidence attack), the mean over
      ``svc_draws`` seeded member/non-member draws (:func:`mia_svc_draws`);
      ``MIA_svc_ci95`` the half-width of its 95 % interval
      (:func:`mean_ci95`), ``MIA_svc_draws`` how many draws it averages;
      ``MIA_svc_salun`` the same attack on SalUn's exact sampling
      (:func:`mia_svc_salun`); ``MIA_svc_detail`` SalUn's other attacks, each
      the mean over the same draws. Non-members: the test samples outside the
      forget set's classes, as SalUn's class-wise test set.
    - ``MIA_entropy``: the entropy attack of NatMU and SSD with the whole test
      set as non-members, as both releases pass it
      (``get_membership_attack_prob(retain, forget, test, model)``);
      ``MIA_entropy_retain_test`` the same attack with only the test samples
      outside the forget set's classes as non-members (equal for sample
      forgetting).
    """
    train_y = bundle.train_y.numpy()
    test_y = bundle.test_y.numpy()
    forget_y, retain_y = train_y[split.forget_idx], train_y[split.retain_idx]
    test_pred = outputs["test"].argmax(1)
    test_retain = split.test_retain_idx
    if split.is_classwise:
        acc_r = mean_class_accuracy(test_pred[test_retain], test_y[test_retain], split.remaining_classes)
        acc_f = mean_class_accuracy(test_pred, test_y, split.forgotten_classes)
    else:
        acc_r = mean_class_accuracy(test_pred[test_retain], test_y[test_retain], range(bundle.num_classes))
        acc_f = accuracy_percent(test_pred[split.test_forget_idx], test_y[split.test_forget_idx])
    # Members for the attacks are remaining train samples. The SVC attacks' non-members are the test samples outside
    # the forget set's classes (SalUn's class-wise test set); the entropy attack's are the whole test set (NatMU's and
    # SSD's releases), with the remaining classes' test samples as a named variant.
    nonmember_idx = test_retain if len(test_retain) else np.arange(len(test_y))
    svc_args = (outputs["retain"], retain_y, outputs["test"][nonmember_idx], test_y[nonmember_idx],
                outputs["forget"], forget_y)
    svc = {name: mean_ci95(values) for name, values in mia_svc_draws(*svc_args, seed=seed, draws=svc_draws).items()}
    svc_mean, svc_ci95, svc_used = svc["confidence"]
    return {
        "FA": accuracy_percent(outputs["forget"].argmax(1), forget_y),
        "RA": accuracy_percent(outputs["retain"].argmax(1), retain_y),
        "TA": accuracy_percent(test_pred, test_y),
        "TA_retain": accuracy_percent(test_pred[test_retain], test_y[test_retain]),
        "Acc_f": None if math.isnan(acc_f) else acc_f,
        "Acc_r": acc_r,
        "MIA_svc": svc_mean,
        "MIA_svc_ci95": svc_ci95,
        "MIA_svc_draws": svc_used,
        "MIA_svc_salun": mia_svc_salun(*svc_args)["confidence"],
        "MIA_svc_detail": {name: summary[0] for name, summary in svc.items() if name != "confidence"},
        "MIA_entropy": mia_entropy(outputs["retain"], outputs["test"], outputs["forget"], seed),
        "MIA_entropy_retain_test": mia_entropy(outputs["retain"], outputs["test"][nonmember_idx], outputs["forget"],
                                               seed),
        "per_class_test": per_class_accuracy(test_pred, test_y, bundle.num_classes),
    }


def evaluate_model(model, bundle: DatasetBundle, split: ForgetSplit, device=None, seed: int = 0) -> dict:
    """FA, RA, TA, Acc_f, Acc_r, both MIAs and per-class test accuracy of one model."""
    return evaluate_outputs(model_outputs(model, bundle, split, device), bundle, split, seed)


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix
