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


def _balanced_sides(members: np.ndarray, nonmembers: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = min(len(members), len(nonmembers), MIA_MAX_PER_SIDE)
    return members[rng.choice(len(members), n, replace=False)], nonmembers[rng.choice(len(nonmembers), n,
                                                                                        replace=False)]


def mia_svc(member_probs, member_labels, nonmember_probs, nonmember_labels, target_probs, target_labels,
            seed: int = 0) -> float:
    """SVC "MIA-efficacy" (SalUn, l1-sparse): % of target samples the attack calls non-members.

    Features are the true-class confidence and the entropy of the softmax.
    An RBF SVC (C=3) learns members (remaining train samples) against
    non-members (test samples) in equal numbers; it is then applied to the
    target (forget) samples. Higher means the forget set looks less trained-on.
    """
    from sklearn.svm import SVC

    def feats(probs, labels):
        return np.column_stack([true_class_confidence(probs, labels), entropy(probs)])

    members = feats(member_probs, member_labels)
    nonmembers = feats(nonmember_probs, nonmember_labels)
    if len(members) == 0 or len(nonmembers) == 0 or len(target_labels) == 0:
        return float("nan")
    members, nonmembers = _balanced_sides(members, nonmembers, seed)
    x = np.vstack([members, nonmembers])
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = SVC(C=3, kernel="rbf", gamma="auto", random_state=seed).fit(x, y)
    predicted = attack.predict(feats(target_probs, target_labels))
    return float(np.mean(predicted == 0) * 100.0)


def mia_entropy(member_probs, nonmember_probs, target_probs, seed: int = 0) -> float:
    """Entropy MIA (NatMU, SSD): % of target samples a logistic attack calls members.

    A class-balanced logistic regression on the softmax entropy separates
    remaining train samples (members) from test samples (non-members); it is
    then applied to the target (forget) samples. The goal is the retrained
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
    # Entropies of confident models crowd near 0, so the attack sees log-entropy.
    transform = lambda v: np.log(v + 1e-8)  # noqa: E731
    attack = LogisticRegression(class_weight="balanced", random_state=seed).fit(transform(x), y)
    return float(np.mean(attack.predict(transform(target[:, None])) == 1) * 100.0)


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


def avg_gap(unlearned: dict, retrained: dict, keys=AVG_GAP_KEYS) -> float:
    """Avg. Gap: mean absolute difference to the retrained model over TA, RA, FA and MIA (entropy)."""
    gaps = [abs(unlearned[k] - retrained[k]) for k in keys
            if unlearned.get(k) is not None and retrained.get(k) is not None
            and not (math.isnan(unlearned[k]) or math.isnan(retrained[k]))]
    return float(np.mean(gaps)) if gaps else float("nan")


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
                     seed: int = 0) -> dict:
    """Every per-model metric from precomputed softmax outputs (see :func:`model_outputs`)."""
    train_y = bundle.train_y.numpy()
    test_y = bundle.test_y.numpy()
    forget_y, retain_y = train_y[split.forget_idx], train_y[split.retain_idx]
    test_pred = outputs["test"].argmax(1)
    test_retain = split.test_retain_idx
    if split.is_classwise:
        acc_r = mean_class_accuracy(test_pred[test_retain], test_y[test_retain], split.remaining_classes)
    else:
        acc_r = mean_class_accuracy(test_pred[test_retain], test_y[test_retain], range(bundle.num_classes))
    acc_f = accuracy_percent(test_pred[split.test_forget_idx], test_y[split.test_forget_idx])
    # Members for the attacks are remaining train samples; non-members the test samples of the
    # classes that remain, so class forgetting does not teach the attack about the forgotten class.
    nonmember_idx = test_retain if len(test_retain) else np.arange(len(test_y))
    return {
        "FA": accuracy_percent(outputs["forget"].argmax(1), forget_y),
        "RA": accuracy_percent(outputs["retain"].argmax(1), retain_y),
        "TA": accuracy_percent(test_pred, test_y),
        "Acc_f": None if math.isnan(acc_f) else acc_f,
        "Acc_r": acc_r,
        "MIA_svc": mia_svc(outputs["retain"], retain_y, outputs["test"][nonmember_idx], test_y[nonmember_idx],
                           outputs["forget"], forget_y, seed),
        "MIA_entropy": mia_entropy(outputs["retain"], outputs["test"][nonmember_idx], outputs["forget"], seed),
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
