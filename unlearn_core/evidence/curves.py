"""Unlearning curves: Acc_f, FA, Acc_r and the loss while a method runs (fed by ``Reporter.observe``)."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from unlearn_core.data import DatasetBundle, to_float
from unlearn_core.evidence._common import _subsample, _take
from unlearn_core.evidence.request import resolve_params
from unlearn_core.forget import ForgetSplit
from unlearn_core.metrics import accuracy_percent, mean_class_accuracy


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
