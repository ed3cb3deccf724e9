"""Deeper evidence of forgetting: feature probes, relearn time, unlearning curves, a retrain distinguisher.

Accuracy on the forget set says what the head answers, not what the model
still knows. Four measurements look further (issue 13, docs/EVIDENCE.md):

- :func:`feature_probe`: a linear (logistic regression) and a k-NN probe on
  the frozen penultimate features, as in "Are we truly forgetting?" (UUEF):
  if a probe still finds the forgotten class in the features, the method only
  changed the head.
- :func:`relearn_time`: how many fine-tuning steps on a few forget samples
  bring the forget accuracy half way back to the original's ("relearn time",
  as used by e.g. Golatkar et al. and in Lynch et al.'s robustness checks).
- :class:`CurveRecorder`: Acc_f, Acc_r, FA and the method's loss at every
  epoch (or every k steps) on fixed small subsets, fed by the training loops
  through :meth:`unlearn_core.progress.Reporter.observe`.
- :func:`retrain_distinguisher_score`: the forgetting-quality score of the
  NeurIPS 2023 machine unlearning challenge (Triantafillou et al., "Are we
  making progress in unlearning?", 2024, and the challenge's evaluation
  report), from K unlearned and K retrained models' logit-scaled confidences.

Each measurement declares its parameters as :class:`~unlearn_core.methods.base.Param`
data (``PROBE_PARAMS``, ``RELEARN_PARAMS``, ``CURVE_PARAMS``,
``DISTINGUISHER_PARAMS``). :func:`collect_evidence` runs the requested ones for
a finished run; the pipeline and the CLI call it through ``evidence=``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearn_core.data import DatasetBundle, to_float
from unlearn_core.device import seeded_global_rng
from unlearn_core.errors import ParameterError, UnlearnError
from unlearn_core.forget import ForgetSplit
from unlearn_core.methods.base import Param
from unlearn_core.metrics import accuracy_percent, mean_class_accuracy
from unlearn_core.training import extract_features, predict_logits

KINDS = ("probe", "relearn", "curves")

PROBE_PARAMS = (
    Param("train_per_class", int, 50, "training samples per class in the probe's training split (the forgotten "
          "classes' samples included)", low=5, high=100000),
    Param("C", float, 1.0, "inverse L2 strength of the logistic-regression probe", low=1e-4, high=1e4, log=True),
    Param("k", int, 5, "neighbours of the k-NN probe", low=1, high=200),
    Param("eval_max", int, 300, "at most this many samples in each evaluation set", low=10, high=1000000),
)
RELEARN_PARAMS = (
    Param("samples", int, 64, "forget samples the copy is fine-tuned on", low=1, high=100000),
    Param("lr", float, 0.01, "SGD learning rate (momentum 0.9, no weight decay)", low=1e-6, high=10.0, log=True),
    Param("batch_size", int, 16, "mini-batch size", low=1, high=4096),
    Param("level", float, 0.5, "target: this fraction of the way from the model's own forget accuracy back to the "
          "original's", low=0.01, high=1.0),
    Param("max_steps", int, 200, "cap: past this many steps the result is 'not within max_steps'", low=1,
          high=100000),
    Param("eval_max", int, 500, "at most this many samples in the forget evaluation set", low=10, high=1000000),
)
CURVE_PARAMS = (
    Param("every", int, 0, "0: a point at the end of every epoch; k > 0: a point every k optimiser steps", low=0,
          high=1000000),
    Param("samples", int, 128, "samples in each fixed evaluation subset (forget test samples, or forget training "
          "samples when there are none; remaining test samples)", low=8, high=100000),
)
DISTINGUISHER_PARAMS = (
    Param("delta", float, 0.01, "delta of the (epsilon, delta) definition the per-sample epsilons estimate",
          low=0.0, high=0.5),
    Param("bin_width", float, 0.5, "width of the epsilon bins; a sample in bin n scores 2^-n", low=1e-3, high=10.0),
)
PARAMS = {"probe": PROBE_PARAMS, "relearn": RELEARN_PARAMS, "curves": CURVE_PARAMS,
          "distinguisher": DISTINGUISHER_PARAMS}


class EvidenceError(UnlearnError):
    """An evidence request is malformed or cannot be measured on this forget set."""


def resolve_params(kind: str, overrides: dict | None = None) -> dict:
    """Defaults of ``kind``'s declared parameters updated by ``overrides`` (text or native), each validated."""
    if kind not in PARAMS:
        raise EvidenceError(f"unknown evidence {kind!r}; choose from {', '.join(PARAMS)}")
    declared = {p.name: p for p in PARAMS[kind]}
    values = {name: p.default for name, p in declared.items()}
    for key, value in (overrides or {}).items():
        if key not in declared:
            raise ParameterError(f"evidence {kind!r} has no parameter {key!r}; it takes {', '.join(declared)}")
        values[key] = declared[key].coerce(value)
    return values


def describe_params() -> dict:
    """Every measurement's declared parameters, as the methods' ``describe`` gives them."""
    return {kind: [p.describe() for p in params] for kind, params in PARAMS.items()}


@dataclass(frozen=True)
class EvidenceRequest:
    """Which measurements to take and their resolved parameters."""

    kinds: tuple[str, ...]
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, kinds: "str | Iterable[str] | EvidenceRequest | None",
              overrides: dict | None = None) -> "EvidenceRequest | None":
        """``"probe,relearn"`` (or a list) and ``{"relearn.lr": "0.05"}`` -> a request; None when empty.

        ``overrides`` keys are ``KIND.NAME``; values are text or native.
        """
        if isinstance(kinds, EvidenceRequest):
            if overrides:
                raise EvidenceError("pass parameter overrides either in the request or separately, not both")
            return kinds
        if kinds is None:
            names: list[str] = []
        elif isinstance(kinds, str):
            names = [k.strip().lower() for k in kinds.split(",") if k.strip()]
        else:
            names = [str(k).strip().lower() for k in kinds if str(k).strip()]
        if "all" in names:
            names = list(KINDS)
        for name in names:
            if name not in KINDS:
                raise EvidenceError(f"unknown evidence {name!r}; choose from {', '.join(KINDS)} (or all)")
        grouped: dict[str, dict] = {}
        for key, value in (overrides or {}).items():
            kind, sep, name = str(key).partition(".")
            if not sep or not name:
                raise EvidenceError(f"an evidence parameter is KIND.NAME=VALUE, got {key!r}")
            kind = kind.strip().lower()
            if kind not in KINDS:
                raise EvidenceError(f"unknown evidence {kind!r} in {key!r}; choose from {', '.join(KINDS)}")
            if kind not in names:
                raise EvidenceError(f"parameter {key!r} given but {kind!r} evidence was not asked for")
            grouped.setdefault(kind, {})[name.strip()] = value
        if not names:
            return None
        ordered = tuple(k for k in KINDS if k in names)
        return cls(ordered, {k: resolve_params(k, grouped.get(k)) for k in ordered})

    def as_dict(self) -> dict:
        return {"kinds": list(self.kinds), "params": self.params}


# -- shared helpers ------------------------------------------------------------------------------------------------

def _subsample(indices: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) <= limit:
        return indices
    return np.sort(rng.choice(indices, size=limit, replace=False))


def _take(images: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
    return images[torch.as_tensor(indices, dtype=torch.long)]


@torch.no_grad()
def _eval_logits(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Logits in eval mode, restoring every module's own mode afterwards.

    ``predict_logits`` restores only the top-level mode, which would switch a
    method's frozen BatchNorm layers back to training in the middle of an
    epoch; curves are read mid-training, so each module keeps its mode here.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        outs = [model(to_float(images[start:start + batch_size]).to(device)).float().cpu()
                for start in range(0, len(images), batch_size)]
    finally:
        for module, mode in modes:
            module.training = mode
    return torch.cat(outs) if outs else torch.zeros(0, 0)


# -- 1. feature probe ----------------------------------------------------------------------------------------------

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


# -- 2. relearn time -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RelearnSets:
    """The forget samples a copy is fine-tuned on and the set its forget accuracy is read on."""

    slice_idx: np.ndarray     # training-set indices (forget samples) to relearn from
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    eval_source: str          # "test": the forgotten classes' test samples; "train": held-out forget samples


def relearn_sets(bundle: DatasetBundle, split: ForgetSplit, params: dict, seed: int = 0) -> RelearnSets:
    """Class/sub-class forgetting: relearn from ``samples`` forget samples, read Acc_f on the test samples.

    Other forget sets: the slice (at most half the forget set) is taken out of
    the forget set and the forget accuracy is read on the rest, so relearning
    is measured on samples the copy was not fine-tuned on.
    """
    rng = np.random.default_rng(seed * 1000 + 37)
    forget_idx = rng.permutation(np.asarray(split.forget_idx, dtype=np.int64))
    if len(split.test_forget_idx):
        slice_idx = np.sort(forget_idx[:params["samples"]])
        eval_idx = _subsample(split.test_forget_idx, params["eval_max"], rng)
        images, labels, source = bundle.test_x, bundle.test_y, "test"
    else:
        if len(forget_idx) < 2:
            raise EvidenceError("relearn time needs at least 2 forget samples when the forget set has no test "
                                "samples (one to relearn from, one to read the accuracy on)")
        take = min(params["samples"], len(forget_idx) // 2)
        slice_idx = np.sort(forget_idx[:take])
        eval_idx = _subsample(forget_idx[take:], params["eval_max"], rng)
        images, labels, source = bundle.train_x, bundle.train_y, "train"
    return RelearnSets(slice_idx, _take(images, eval_idx), _take(labels, eval_idx), source)


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device) -> float:
    return accuracy_percent(_eval_logits(model, images, device).argmax(1).numpy(), labels.numpy())


def relearn_time(model: nn.Module, original_accuracy: float, bundle: DatasetBundle, split: ForgetSplit, device,
                 params: dict | None = None, seed: int = 0, sets: RelearnSets | None = None) -> dict:
    """Optimiser steps until a copy fine-tuned on a few forget samples regains forget accuracy.

    A deep copy of ``model`` is trained with cross-entropy on the true labels
    of ``samples`` forget samples (SGD, ``lr``, momentum 0.9, batches of
    ``batch_size`` cycling over the slice, seeded); after each step its forget
    accuracy ``a_t`` is read on the evaluation set of :func:`relearn_sets`.
    With ``a_0`` the copy's own accuracy before any step and ``a_orig`` the
    original model's on the same set, the target is
    ``a_0 + level * (a_orig - a_0)`` (default: half way back). The result is
    the first ``t`` with ``a_t >= target`` (0 if ``a_0`` already reaches it),
    or ``None`` with ``relearn_capped`` when ``max_steps`` steps do not
    (``None`` with ``diverged`` if the loss became non-finite first).
    A model that only hid the forget set relearns in a handful of steps; the
    retrained model is the reference. (Relearn time as an unlearning check:
    Golatkar et al., CVPR 2020; Lynch et al., 2024.)
    """
    params = resolve_params("relearn", params)
    sets = sets or relearn_sets(bundle, split, params, seed)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    learner = copy.deepcopy(model).to(device)
    for parameter in learner.parameters():
        parameter.requires_grad_(True)
    start = _accuracy(learner, sets.eval_images, sets.eval_labels, device)
    target = start + params["level"] * (original_accuracy - start)
    history = [start]
    steps, diverged = (0 if start >= target else None), False
    if steps is None:
        images = _take(bundle.train_x, sets.slice_idx)
        labels = _take(bundle.train_y, sets.slice_idx)
        optimizer = torch.optim.SGD(learner.parameters(), lr=params["lr"], momentum=0.9)
        generator = torch.Generator().manual_seed(seed * 1000 + 41)
        order = torch.zeros(0, dtype=torch.long)
        with torch.enable_grad(), seeded_global_rng(seed, device):
            for step in range(1, params["max_steps"] + 1):
                if len(order) == 0:  # a fresh shuffle of the slice each pass
                    order = torch.randperm(len(labels), generator=generator)
                batch, order = order[:params["batch_size"]], order[params["batch_size"]:]
                learner.train()
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(learner(to_float(images[batch]).to(device)), labels[batch].to(device))
                if not math.isfinite(loss.item()):
                    diverged = True  # reported, not raised: a measurement must not fail the run it describes
                    break
                loss.backward()
                optimizer.step()
                accuracy = _accuracy(learner, sets.eval_images, sets.eval_labels, device)
                history.append(accuracy)
                if accuracy >= target:
                    steps = step
                    break
    # "Not within max_steps" only when the cap was reached; a diverged count is flagged as such instead.
    return {"relearn_steps": steps, "relearn_capped": steps is None and not diverged, "max_steps": params["max_steps"],
            "start_acc": start, "target_acc": target, "original_acc": original_accuracy, "final_acc": history[-1],
            "accuracy_by_step": history, "diverged": diverged, "eval": sets.eval_source,
            "n_relearn": int(len(sets.slice_idx)), "n_eval": int(len(sets.eval_labels))}


# -- 3. unlearning curves ------------------------------------------------------------------------------------------

class CurveRecorder:
    """Acc_f, FA, Acc_r and the method's loss during unlearning, on fixed small evaluation subsets.

    Attached to a task's reporter (:meth:`attach`), it is offered the model
    after every optimiser step by ``Reporter.observe`` in the shared training
    loops (``fit_classifier``, ``train_steps``, SCRUB's loop) and evaluates it
    at the end of every epoch (``every=0``) or every ``every`` steps. Points:

    - ``Acc_f``: accuracy (%) on up to ``samples`` test samples of the forgotten
      classes (None for forget sets without test samples),
    - ``FA``: accuracy (%) on up to ``samples`` forget training samples, only
      when there are no forget test samples (random or chosen samples; for
      class forgetting Acc_f says the same and each point would cost more),
    - ``Acc_r``: mean per-class accuracy (%) on up to ``samples`` remaining test
      samples (the spec's Acc_r, on a fixed subset),
    - ``loss``: the method's own training loss as its loop reports it (the
      running mean over the epoch so far).

    The first point (step 0) is the original model, the last the returned
    model. Evaluation time is kept in ``seconds`` so the pipeline can leave it
    out of the method's timing.
    """

    def __init__(self, bundle: DatasetBundle, split: ForgetSplit, device, params: dict | None = None,
                 seed: int = 0):
        self.params = resolve_params("curves", params)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        rng = np.random.default_rng(seed * 1000 + 43)
        n = self.params["samples"]
        test_forget = _subsample(split.test_forget_idx, n, rng)
        # Each point is a forward pass over every subset; the forget training samples are read only when there
        # is no forget test set, which keeps a class-forgetting point at two small subsets (the 20 % budget).
        forget = _subsample(split.forget_idx, n, rng) if len(test_forget) == 0 else np.zeros(0, dtype=np.int64)
        test_retain = _subsample(split.test_retain_idx, n, rng)
        self._sizes = (len(test_forget), len(forget), len(test_retain))
        images = torch.cat([_take(bundle.test_x, test_forget), _take(bundle.train_x, forget),
                            _take(bundle.test_x, test_retain)])
        self._images = to_float(images).to(self.device)  # converted once: every point reads the same tensor
        self._labels = np.concatenate([bundle.test_y.numpy()[test_forget], bundle.train_y.numpy()[forget],
                                       bundle.test_y.numpy()[test_retain]])
        self._remaining = split.remaining_classes if split.is_classwise else tuple(range(bundle.num_classes))
        self.points: list[dict] = []
        self.seconds = 0.0
        self.steps = 0
        self._last_model = None

    def attach(self, task) -> None:
        """Observe ``task``'s training loops and record the original model as point 0."""
        task.reporter.observer = self
        self.record(task.original, "original", 0)

    @torch.no_grad()
    def _evaluate(self, model: nn.Module) -> dict:
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            predictions = torch.cat([model(self._images[s:s + 1024]).argmax(1).cpu()
                                     for s in range(0, len(self._images), 1024)]).numpy()
        finally:
            for module, mode in modes:
                module.training = mode
        a, b, _ = self._sizes
        labels = self._labels
        acc_f = accuracy_percent(predictions[:a], labels[:a]) if a else None
        return {"Acc_f": acc_f, "FA": accuracy_percent(predictions[a:a + b], labels[a:a + b]) if b else None,
                "Acc_r": mean_class_accuracy(predictions[a + b:], labels[a + b:], self._remaining)}

    def record(self, model: nn.Module, stage: str, epoch: int, loss: float | None = None) -> dict:
        started = time.perf_counter()
        point = {"step": self.steps, "epoch": epoch, "stage": stage, **self._evaluate(model),
                 "loss": None if loss is None or not math.isfinite(loss) else float(loss)}
        self.points.append(point)
        self._last_model = (model, self.steps)
        self.seconds += time.perf_counter() - started
        return point

    def __call__(self, model: nn.Module, stage: str, fields: dict) -> dict | None:
        """Called by ``Reporter.observe`` after every optimiser step; returns a point when one is due."""
        self.steps += 1
        every = self.params["every"]
        due = (fields.get("step") == fields.get("steps")) if every == 0 else self.steps % every == 0
        if not due:
            return None
        return self.record(model, stage, int(fields.get("epoch") or 0), fields.get("loss"))

    def finish(self, model: nn.Module) -> None:
        """Record the returned model unless the last point already is it (same object, no step since)."""
        if self._last_model is not None and self._last_model[0] is model and self._last_model[1] == self.steps:
            return
        self.record(model, "final", self.points[-1]["epoch"] if self.points else 0)

    def as_dict(self) -> dict:
        a, b, c = self._sizes
        return {"every": self.params["every"], "n_forget_test": a, "n_forget_train": b, "n_retain_test": c,
                "steps": self.steps, "seconds": self.seconds, "points": self.points}


def format_curves(curves: dict, max_rows: int = 12) -> list[str]:
    """The curve as a small text table (the CLI's); long curves are thinned to ``max_rows`` evenly spread rows."""
    points = curves.get("points") or []
    if not points:
        return []
    if len(points) > max_rows:
        keep = sorted({int(round(i)) for i in np.linspace(0, len(points) - 1, max_rows)})
        points = [points[i] for i in keep]

    def fmt(value, width=7):
        return f"{'-':>{width}s}" if value is None else f"{value:{width}.2f}"

    lines = [f"{'step':>6s} {'epoch':>5s} {'stage':22s} {'Acc_f':>7s} {'FA':>7s} {'Acc_r':>7s} {'loss':>8s}"]
    for p in points:
        lines.append(f"{p['step']:6d} {p['epoch']:5d} {str(p['stage'])[:22]:22s} {fmt(p['Acc_f'])} {fmt(p['FA'])} "
                     f"{fmt(p['Acc_r'])} {fmt(p['loss'], 8) if p['loss'] is not None else '       -'}")
    return lines


# -- 4. retrain distinguisher (NeurIPS 2023 unlearning challenge) ----------------------------------------------------

def logit_scaled_confidence(logits, labels) -> np.ndarray:
    """``log(p_y / (1 - p_y))`` per row, with ``p_y`` the softmax probability of the true label.

    Computed as ``z_y - logsumexp_{j != y} z_j``, which is the same quantity
    without forming ``p_y`` (it saturates at 1 in float32 for confident
    models). This is the statistic Carlini et al.'s LiRA and the NeurIPS 2023
    unlearning challenge compare between models.
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if z.ndim != 2 or z.shape[1] < 2 or len(z) != len(y):
        raise EvidenceError("logit-scaled confidence needs logits of shape (n, classes >= 2) and n labels")
    true = z[torch.arange(len(y)), y]
    others = z.clone()
    others[torch.arange(len(y)), y] = float("-inf")
    return (true - torch.logsumexp(others, dim=1)).numpy()


def forget_confidences(model: nn.Module, bundle: DatasetBundle, split: ForgetSplit, device=None) -> np.ndarray:
    """The logit-scaled confidence of ``model`` on every forget training sample (in ``split.forget_idx`` order).

    A sweep collects one such vector per unlearned and per retrained model and
    stacks them as columns for :func:`retrain_distinguisher_score`.
    """
    logits = predict_logits(model, _take(bundle.train_x, split.forget_idx), device)
    return logit_scaled_confidence(logits.numpy(), bundle.train_y.numpy()[split.forget_idx])


def _epsilons_one(u: np.ndarray, r: np.ndarray, delta: float) -> float:
    """The largest epsilon any threshold attack on one sample's confidences implies (see the score's docstring)."""
    u, r = np.sort(u), np.sort(r)
    thresholds = np.concatenate([np.unique(np.concatenate([u, r])), [np.inf]])
    below_u = np.searchsorted(u, thresholds, side="left") / len(u)   # share of unlearned models with s < t
    below_r = np.searchsorted(r, thresholds, side="left") / len(r)   # share of retrained models with s < t
    # Attack "unlearned iff s >= t" and its mirror "unlearned iff s < t"; positives are the unlearned models.
    fnr = np.concatenate([below_u, 1.0 - below_u])
    fpr = np.concatenate([1.0 - below_r, below_r])
    if np.any((fpr == 0) & (fnr == 0)):
        return math.inf  # some threshold separates the two families perfectly
    usable = (fpr > 0) & (fnr > 0)
    fpr, fnr = fpr[usable], fnr[usable]
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(1 - delta - fpr > 0, np.log(np.maximum(1 - delta - fpr, 1e-300)) - np.log(fnr), np.nan)
        second = np.where(1 - delta - fnr > 0, np.log(np.maximum(1 - delta - fnr, 1e-300)) - np.log(fpr), np.nan)
    both = np.concatenate([first, second])
    both = both[np.isfinite(both)]
    return float(max(0.0, both.max())) if both.size else 0.0


def retrain_distinguisher_score(unlearned_conf, retrained_conf, delta: float = 0.01, bin_width: float = 0.5) -> dict:
    """Forgetting quality of the NeurIPS 2023 machine unlearning challenge, from K unlearned and K retrained models.

    Inputs are ``(n_samples, K_u)`` and ``(n_samples, K_r)`` arrays: column
    ``j`` holds model ``j``'s logit-scaled confidence
    (:func:`logit_scaled_confidence`) on each forget sample. For each sample:

    1. Every threshold attack on that sample's 2K scalars is considered, in
       both directions ("unlearned iff s >= t" and "unlearned iff s < t", t
       over every observed value and +inf). The unlearned models are the
       positives: FNR is the share of unlearned models called retrained, FPR
       the share of retrained models called unlearned.
    2. Each (FPR, FNR) pair implies
       ``eps = max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR))``
       (a term whose numerator is not positive is left out). A pair with
       ``FPR = FNR = 0`` means the sample separates the two families perfectly:
       ``eps = inf``. A pair with exactly one zero rate is skipped: with K
       models a zero rate only says the true rate is below about 1/K.
    3. The sample's epsilon is the largest over its attacks, at least 0.

    The aggregate follows the challenge: each epsilon falls in a bin of width
    ``bin_width`` (``n = floor(eps / bin_width)``), the sample scores
    ``2^-n`` (0 for ``eps = inf``), and the forgetting quality ``score`` is the
    mean over samples, in [0, 1]: 1 when no attack tells the unlearned models
    from the retrained ones, 0 when every sample separates them. Source:
    Triantafillou et al., "Are we making progress in unlearning? Findings from
    the first NeurIPS unlearning competition" (2024) and the challenge's
    evaluation report; implemented from that description.

    With few models, chance alone makes some threshold look separating, so
    two identical distributions score well below 1 at small K
    (docs/EVIDENCE.md measures it); compare methods at equal K.
    """
    u = np.asarray(unlearned_conf, dtype=np.float64)
    r = np.asarray(retrained_conf, dtype=np.float64)
    if u.ndim == 1 and r.ndim == 1:  # one sample's K scalars
        u, r = u[None, :], r[None, :]
    if u.ndim != 2 or r.ndim != 2 or len(u) != len(r):
        raise EvidenceError(f"confidences must be (n_samples, K) arrays with the same n; got {u.shape} and {r.shape}")
    if len(u) == 0:
        raise EvidenceError("no forget samples to score")
    if u.shape[1] < 2 or r.shape[1] < 2:
        raise EvidenceError(f"the distinguisher needs at least 2 unlearned and 2 retrained models, got "
                            f"{u.shape[1]} and {r.shape[1]}")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise EvidenceError("confidences must be finite (a model's outputs were NaN or infinite)")
    if not 0 <= delta < 1 or not bin_width > 0:
        raise EvidenceError("delta must be in [0, 1) and bin_width positive")
    epsilons = np.array([_epsilons_one(u[i], r[i], delta) for i in range(len(u))])
    finite = np.isfinite(epsilons)
    bins = np.full(len(epsilons), -1, dtype=np.int64)
    bins[finite] = np.floor(epsilons[finite] / bin_width).astype(np.int64)
    sample_scores = np.where(finite, 2.0 ** -np.maximum(bins, 0).astype(np.float64), 0.0)
    counts = np.bincount(bins[finite], minlength=1).tolist() if finite.any() else [0]
    return {"score": float(sample_scores.mean()), "epsilons": epsilons, "sample_scores": sample_scores,
            "histogram": {"bin_width": bin_width, "counts": counts, "infinite": int((~finite).sum())},
            "k_unlearned": int(u.shape[1]), "k_retrained": int(r.shape[1]), "delta": delta,
            "n_samples": int(len(u))}


def distinguisher_from_models(unlearned: list, retrained: list, bundle: DatasetBundle, split: ForgetSplit,
                              device=None, params: dict | None = None) -> dict:
    """:func:`retrain_distinguisher_score` of lists of unlearned and retrained models of one forget set."""
    params = resolve_params("distinguisher", params)
    u = np.column_stack([forget_confidences(m, bundle, split, device) for m in unlearned])
    r = np.column_stack([forget_confidences(m, bundle, split, device) for m in retrained])
    return retrain_distinguisher_score(u, r, params["delta"], params["bin_width"])


# -- a run's evidence ----------------------------------------------------------------------------------------------

def curve_recorder(setup, request: EvidenceRequest | None) -> CurveRecorder | None:
    """A recorder for a prepared setup when ``request`` asks for curves, else None."""
    if request is None or "curves" not in request.kinds:
        return None
    return CurveRecorder(setup.bundle, setup.split, setup.device, request.params["curves"], setup.seed)


def _models(setup, run) -> dict:
    models = {"original": setup.original.model, "unlearned": run.model}
    if setup.retrained is not None:
        models["retrained"] = setup.retrained.model
    return models


def _cached(setup, key: tuple, compute):
    """Reference models' evidence is the same for every method of a setup: computed once per setup."""
    store = setup._outputs
    full = ("evidence",) + key
    if full not in store:
        store[full] = compute()
    return store[full]


def collect_evidence(setup, run, kinds, params: dict | None = None) -> dict:
    """The evidence section of a run's report: per-model probe and relearn results and the run's curves.

    ``setup`` is a :class:`unlearn_core.pipeline.Setup`, ``run`` a
    :class:`unlearn_core.pipeline.MethodRun`; ``kinds`` and ``params`` are
    what :meth:`EvidenceRequest.parse` takes (or a request). Curves are read
    from ``run.evidence`` (recorded while the method ran; ask ``run_method``
    for them). The original's and the retrained model's results are cached on
    the setup, so a bench over many methods pays for them once.
    """
    request = EvidenceRequest.parse(kinds, params)
    if request is None:
        return {}
    out: dict = {"kinds": list(request.kinds), "params": request.params, "seconds": {}}
    models = _models(setup, run)
    if "probe" in request.kinds:
        started = time.perf_counter()
        p = request.params["probe"]
        key = tuple(sorted(p.items()))
        split_ = _cached(setup, ("probe-split", key), lambda: probe_split(setup.bundle, setup.split, p, setup.seed))
        out["probe"] = {}
        for which, model in models.items():
            compute = lambda model=model: feature_probe(model, setup.bundle, setup.split, setup.device, p,  # noqa
                                                        setup.seed, split_)
            out["probe"][which] = compute() if which == "unlearned" else _cached(setup, ("probe", which, key),
                                                                                  compute)
        out["seconds"]["probe"] = time.perf_counter() - started
    if "relearn" in request.kinds:
        started = time.perf_counter()
        p = request.params["relearn"]
        key = tuple(sorted(p.items()))
        sets = _cached(setup, ("relearn-sets", key), lambda: relearn_sets(setup.bundle, setup.split, p, setup.seed))
        original_acc = _cached(setup, ("relearn-original-acc", key), lambda: _accuracy(
            setup.original.model, sets.eval_images, sets.eval_labels, setup.device))
        out["relearn"] = {}
        for which, model in models.items():
            compute = lambda model=model: relearn_time(model, original_acc, setup.bundle, setup.split,  # noqa
                                                       setup.device, p, setup.seed, sets)
            out["relearn"][which] = compute() if which == "unlearned" else _cached(setup, ("relearn", which, key),
                                                                                    compute)
        out["seconds"]["relearn"] = time.perf_counter() - started
    if "curves" in request.kinds:
        curves = (getattr(run, "evidence", None) or {}).get("curves")
        if curves is None:
            raise EvidenceError("curves are recorded while the method runs: pass evidence to run_method as well")
        out["curves"] = curves
        out["seconds"]["curves"] = curves["seconds"]
    return out


def format_evidence(evidence: dict) -> list[str]:
    """The evidence section as text lines (probe and relearn per model, then the curve table)."""
    lines: list[str] = []

    def fmt(value):
        return "     -" if value is None else f"{value:6.2f}"

    probe, relearn = evidence.get("probe"), evidence.get("relearn")
    if probe or relearn:
        header = f"{'evidence':10s}"
        if probe:
            header += f" {'probe_f':>7s} {'probe_r':>7s} {'knn_f':>7s}"
        if relearn:
            header += f" {'relearn steps (to target %)':>28s}"
        lines.append(header)
        for which in ("original", "unlearned", "retrained"):
            row = f"{which:10s}"
            if probe and which in probe:
                row += f" {fmt(probe[which]['probe_forget']):>7s} {fmt(probe[which]['probe_retain']):>7s} " \
                       f"{fmt(probe[which]['knn_forget']):>7s}"
            if relearn and which in relearn:
                r = relearn[which]
                steps = (f"not within {r['max_steps']}" if r["relearn_capped"]
                         else "diverged" if r.get("diverged") else str(r["relearn_steps"]))
                row += f" {steps + ' (' + format(r['target_acc'], '.1f') + ')':>28s}"
            lines.append(row)
    if evidence.get("curves"):
        lines.append("unlearning curve (fixed evaluation subsets; step 0 = original):")
        lines += ["  " + line for line in format_curves(evidence["curves"])]
    return lines
