"""The feature probe: is the forgotten data still linearly (or k-NN) readable from the frozen features?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unlearn_core.data import DatasetBundle
from unlearn_core.evidence._common import _subsample, _take
from unlearn_core.evidence.request import EvidenceError, resolve_params
from unlearn_core.forget import ForgetSplit
from unlearn_core.metrics import accuracy_percent
from unlearn_core.training import extract_features


def probe_accuracies(train_features: np.ndarray, train_labels: np.ndarray, eval_sets: dict,
                     C: float = 1.0, k: int = 5, seed: int = 0) -> dict:
    """Fit a logistic-regression and a k-NN probe on features; their accuracy (%) on each evaluation set.

    ``eval_sets`` maps a name to ``(features, labels)``. Features are
    standardised with the training split's mean and standard deviation (the
    scale of penultimate features varies by orders of magnitude between models
    and lbfgs needs comparable scales to converge); the linear probe is a
    multinomial L2 logistic regression (inverse strength ``C``), the k-NN probe
    a majority vote of the ``k`` nearest training features (Euclidean, after
    standardisation). Returns ``{name: {"linear": acc, "knn": acc}}``; an
    empty set gives ``None``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    x = np.asarray(train_features, dtype=np.float64)
    y = np.asarray(train_labels)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise EvidenceError("the probe needs a non-empty 2-D feature matrix with one label per row")
    if len(np.unique(y)) < 2:
        raise EvidenceError("the probe needs at least two classes in its training split")
    mean, std = x.mean(0), x.std(0)
    std[std < 1e-8] = 1.0  # constant features (dead ReLUs) carry nothing; keep them at 0 instead of dividing by 0
    scale = lambda v: (np.asarray(v, dtype=np.float64) - mean) / std  # noqa: E731
    linear = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(scale(x), y)
    knn = KNeighborsClassifier(n_neighbors=min(int(k), len(x))).fit(scale(x), y)
    out = {}
    for name, (features, labels) in eval_sets.items():
        labels = np.asarray(labels)
        if len(labels) == 0:
            out[name] = {"linear": None, "knn": None}
            continue
        z = scale(features)
        out[name] = {"linear": accuracy_percent(linear.predict(z), labels),
                     "knn": accuracy_percent(knn.predict(z), labels)}
    return out


@dataclass(frozen=True)
class ProbeSplit:
    """Index sets of a probe: its training split and where probe_forget / probe_retain are read."""

    train_idx: np.ndarray          # training-set indices the probe is fit on (forget samples included)
    forget_eval_idx: np.ndarray    # indices into ``forget_eval_source``
    forget_eval_source: str        # "test" (the forgotten classes' test samples) or "train" (held-out forget samples)
    retain_eval_idx: np.ndarray    # test-set indices of the remaining classes / samples


def probe_split(bundle: DatasetBundle, split: ForgetSplit, params: dict, seed: int = 0) -> ProbeSplit:
    """The probe's data, identical for every model of a run (seeded).

    Class and sub-class forgetting: the training split holds up to
    ``train_per_class`` remaining samples of each class plus up to
    ``train_per_class`` forget samples of each forgotten label; probe_forget is
    read on the forgotten classes' (sub-class's) test samples. Other forget
    sets (random, indices) have no forget test samples: the forget set is
    halved, one half joins the training split and the other is held out as the
    "forget-like" evaluation set.
    """
    rng = np.random.default_rng(seed * 1000 + 31)
    per_class = params["train_per_class"]
    train_y = bundle.train_y.numpy()
    forget_idx = np.asarray(split.forget_idx, dtype=np.int64)
    if len(split.test_forget_idx):
        forget_train, forget_eval, source = forget_idx, np.asarray(split.test_forget_idx), "test"
    else:
        if len(forget_idx) < 2:
            raise EvidenceError("the probe needs at least 2 forget samples when the forget set has no test samples "
                                "(one to train on, one to hold out)")
        shuffled = rng.permutation(forget_idx)
        half = len(shuffled) // 2
        forget_train, forget_eval, source = np.sort(shuffled[:half]), np.sort(shuffled[half:]), "train"
    parts = []
    for pool in (np.asarray(split.retain_idx, dtype=np.int64), forget_train):
        for label in np.unique(train_y[pool]):
            parts.append(_subsample(pool[train_y[pool] == label], per_class, rng))
    train_idx = np.sort(np.concatenate(parts))
    return ProbeSplit(train_idx, _subsample(forget_eval, params["eval_max"], rng), source,
                      _subsample(split.test_retain_idx, params["eval_max"], rng))


def feature_probe(model: nn.Module, bundle: DatasetBundle, split: ForgetSplit, device=None,
                  params: dict | None = None, seed: int = 0, probe: ProbeSplit | None = None) -> dict:
    """Is the forgotten data still in the features? (UUEF: "Are we truly forgetting? A critical
    re-examination of machine unlearning evaluation protocols", 2025).

    The model's penultimate features (``UnlearnModel.features``) are frozen;
    a linear probe and a k-NN probe (see :func:`probe_accuracies`) are fit on
    the probe split (:func:`probe_split`, which includes forget samples with
    their true labels) and read on held-out data:

    - ``probe_forget``: linear-probe accuracy on the forget evaluation set (%),
    - ``probe_retain``: linear-probe accuracy on remaining test samples (%),
    - ``knn_forget``: k-NN accuracy on the forget evaluation set (%).

    A method that only changed the head keeps ``probe_forget`` near the
    original's; the retrained model, whose features never saw the forget data,
    is the reference.
    """
    params = resolve_params("probe", params)
    probe = probe or probe_split(bundle, split, params, seed)
    forget_images = bundle.test_x if probe.forget_eval_source == "test" else bundle.train_x
    forget_labels = bundle.test_y if probe.forget_eval_source == "test" else bundle.train_y

    def feats(images: torch.Tensor, indices: np.ndarray) -> np.ndarray:
        return extract_features(model, _take(images, indices), device).numpy()

    train_features = feats(bundle.train_x, probe.train_idx)
    if not np.isfinite(train_features).all():
        raise EvidenceError("the model's features are NaN or infinite; a probe cannot be fit")
    scores = probe_accuracies(
        train_features, bundle.train_y.numpy()[probe.train_idx],
        {"forget": (feats(forget_images, probe.forget_eval_idx), forget_labels.numpy()[probe.forget_eval_idx]),
         "retain": (feats(bundle.test_x, probe.retain_eval_idx), bundle.test_y.numpy()[probe.retain_eval_idx])},
        C=params["C"], k=params["k"], seed=seed)
    return {"probe_forget": scores["forget"]["linear"], "probe_retain": scores["retain"]["linear"],
            "knn_forget": scores["forget"]["knn"], "knn_retain": scores["retain"]["knn"],
            "forget_eval": probe.forget_eval_source, "n_train": int(len(probe.train_idx)),
            "n_forget_eval": int(len(probe.forget_eval_idx)), "n_retain_eval": int(len(probe.retain_eval_idx))}
