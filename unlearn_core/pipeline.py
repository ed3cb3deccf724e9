"""One unlearning run end to end: data, original, retrained reference, method, metrics.

:func:`prepare` resolves a request and trains or loads the cached models;
:func:`run_method` times one method; :func:`build_report` evaluates the
original, unlearned and retrained models into a :class:`~unlearn_core.report.Report`
(``Report.to_dict()`` is the JSON the CLI writes and the run store keeps).
:func:`unlearn` does all three. The forget set travels as one
:class:`~unlearn_core.forget.ForgetSpec`: text given to :func:`prepare` or
:func:`unlearn` (the Python API's edge) is parsed there, once.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from unlearn_core.arrays import ArrayCache
from unlearn_core.checkpoints import cache_key
from unlearn_core.data import DatasetBundle, default_model_for, load_dataset
from unlearn_core.device import TimedConditions, pick_device, seeded_global_rng, timing_conditions, timing_mismatch
from unlearn_core.forget import ForgetSpec, ForgetSplit
from unlearn_core.methods import UnlearnTask, get_method
from unlearn_core.metrics import avg_gap, avg_gap_keys, evaluate_outputs, js_divergence, model_outputs, rte
from unlearn_core.progress import ProgressFn, Reporter
from unlearn_core.report import Report
from unlearn_core.training import TrainedModel, TrainRecipe, default_recipe, get_original, get_retrained


@dataclass
class Setup:
    """A resolved request: the data, the split and the two cached models."""

    bundle: DatasetBundle
    split: ForgetSplit
    model_name: str
    seed: int
    device: torch.device
    recipe: TrainRecipe
    original: TrainedModel
    retrained: TrainedModel | None
    _outputs: dict = field(default_factory=dict, repr=False)

    def task(self, progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> UnlearnTask:
        return UnlearnTask(self.bundle, self.split, self.original.model, self.device, self.seed, self.recipe,
                           self.model_name, Reporter(progress, cancel, "unlearn"))

    def outputs(self, which: str) -> dict[str, np.ndarray]:
        """Softmax outputs of the original or retrained model on the forget, remaining and test sets.

        Computed once (:func:`unlearn_core.metrics.model_outputs`) and kept on disk
        (:func:`reference_outputs_key`, under ``data_dir()/outputs``), so another process reads them instead of
        running the model over every sample again.
        """
        if which not in self._outputs:
            trained = self.original if which == "original" else self.retrained
            if trained is None:
                raise ValueError("no retrained model was prepared")
            cache = reference_outputs_cache()
            key = reference_outputs_key(trained, self.bundle, self.split)
            self._outputs[which] = cache.get_or_compute(
                key, lambda: model_outputs(trained.model, self.bundle, self.split, self.device))
        return self._outputs[which]

    def metrics(self, which: str) -> dict:
        key = f"metrics:{which}"
        if key not in self._outputs:
            self._outputs[key] = evaluate_outputs(self.outputs(which), self.bundle, self.split, self.seed)
        return self._outputs[key]


OUTPUTS_VERSION = 1
_outputs_caches: dict = {}
_outputs_lock = threading.Lock()


def reference_outputs_key(trained: TrainedModel, bundle: DatasetBundle, split: ForgetSplit) -> str:
    """What determines a model's stored outputs: its checkpoint key and training record (a model trained again
    under the same key gets new outputs), the data (name and sizes) and the forget split."""
    return cache_key({"v": OUTPUTS_VERSION, "model": trained.key, "trained": [trained.meta.get("seconds"),
                                                                              trained.meta.get("timing")],
                      "dataset": bundle.name, "n_train": int(bundle.train_y.numel()),
                      "n_test": int(bundle.test_y.numel()), "split": split.key()})


def reference_outputs_cache() -> ArrayCache:
    """The on-disk store of the reference models' outputs of this data directory (one per process)."""
    from unlearn_core import paths

    root = paths.data_dir() / "outputs"
    with _outputs_lock:
        if root not in _outputs_caches:
            _outputs_caches[root] = ArrayCache(root, memory_items=8)
        return _outputs_caches[root]


def prepare(dataset: str = "mnist5k", model: str | None = None, forget: str | ForgetSpec = "class:3",
            seed: int = 0, device=None, recipe: TrainRecipe | None = None, progress: ProgressFn | None = None,
            cancel: threading.Event | None = None, with_retrain: bool = True, retime_reference: bool = False) -> Setup:
    """Load the data, resolve the forget set, and train or load the original and retrained models.

    ``forget`` is a :class:`ForgetSpec`, or text parsed here with
    :meth:`ForgetSpec.parse` (index files allowed: the caller's own text).
    ``retime_reference``: when the cached retrained model was timed on another
    device or torch thread count than this process uses now, train it again
    so RTE divides like-for-like seconds (``bench`` and sweeps ask for this).
    """
    bundle = load_dataset(dataset)
    model_name = model or default_model_for(dataset)
    spec = forget if isinstance(forget, ForgetSpec) else ForgetSpec.parse(forget)
    split = spec.resolve(bundle, seed)
    device = device if isinstance(device, torch.device) else pick_device(device)
    recipe = recipe or default_recipe(bundle.name)
    original = get_original(bundle, model_name, seed, recipe, device, progress, cancel)
    retime_for = timing_conditions(device) if retime_reference else None
    retrained = get_retrained(bundle, split, model_name, seed, recipe, device, progress, cancel,
                              retime_for=retime_for) if with_retrain else None
    return Setup(bundle, split, model_name, seed, device, recipe, original, retrained)


@dataclass
class MethodRun:
    """A finished method run: the model, its resolved parameters and wall time."""

    method: str
    params: dict
    model: torch.nn.Module
    seconds: float
    artifacts: dict
    timing: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)  # what was recorded while it ran (unlearning curves)
    # The unlearned model's softmax outputs (forget, retain, test), set by build_report; kept with the run.
    outputs: dict | None = field(default=None, repr=False)


def run_method(setup: Setup, method: str, params: dict | None = None, progress: ProgressFn | None = None,
               cancel: threading.Event | None = None, evidence=None) -> MethodRun:
    """Run one registered method on a prepared setup, timing the unlearning step alone.

    ``evidence`` (kinds or an :class:`~unlearn_core.evidence.EvidenceRequest`) that asks for
    curves records them while the method runs; their evaluation time is left out of ``seconds``.
    """
    from unlearn_core.evidence import EvidenceRequest, curve_recorder

    method_cls = get_method(method)
    resolved = method_cls.resolve_params(params)
    task = setup.task(progress, cancel)
    curves = curve_recorder(setup, EvidenceRequest.parse(evidence))
    if curves is not None:
        curves.attach(task)
    curve_seconds = curves.seconds if curves is not None else 0.0
    _warm_up_optimizers()
    if setup.device.type == "cuda":
        torch.cuda.synchronize()
    with TimedConditions(setup.device) as timing:
        started = time.perf_counter()
        # Methods with dropout draw from torch's global generators: seeded here, once for every method, a seed
        # gives one unlearned model (the bench's seeds are otherwise not reproducible).
        with seeded_global_rng(setup.seed, setup.device):
            output = method_cls().unlearn(task, resolved)
        if setup.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started - output.diagnostics_seconds
    if curves is not None:
        seconds -= curves.seconds - curve_seconds
    if output.seconds is not None:
        seconds = output.seconds
    output.model.eval()
    recorded = {}
    if curves is not None:
        curves.finish(output.model)
        recorded["curves"] = curves.as_dict()
    return MethodRun(method_cls.name, resolved, output.model, seconds, output.artifacts, timing=timing.conditions,
                     evidence=recorded)


_optimizers_warm = False


def _warm_up_optimizers() -> None:
    """Take one throw-away step of each optimizer family once per process.

    The first optimizer step in a process pays seconds of lazy imports; without
    this, whichever method ran first would be charged for them in its timing.
    """
    global _optimizers_warm
    if _optimizers_warm:
        return
    parameter = torch.nn.Parameter(torch.zeros(1))
    for optimizer in (torch.optim.SGD([parameter], lr=0.0, momentum=0.9), torch.optim.Adam([parameter], lr=0.0),
                      torch.optim.AdamW([parameter], lr=0.0)):
        parameter.grad = torch.zeros(1)
        optimizer.step()
    _optimizers_warm = True


def clean_json(value):
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def build_report(setup: Setup, run: MethodRun, evidence=None) -> Report:
    """Metrics of the original, unlearned and retrained models, gaps, JS, RTE and the method's scope.

    ``in_scope``/``in_scope_reason``: whether the method was designed for this
    kind of forget set. ``rte`` is the retrained model's training seconds over
    the method's seconds, given only when both were timed under the same
    conditions (``timing``/``retrain_timing``); otherwise ``rte`` is ``None``,
    ``rte_comparable`` false and ``rte_not_comparable_reason`` says why.
    ``evidence`` (e.g. ``"probe,relearn,curves"`` or an ``EvidenceRequest``) adds an ``evidence``
    section (:func:`unlearn_core.evidence.collect_evidence`). NaN and infinite numbers read as ``None``.
    The unlearned model's outputs are left on ``run.outputs`` (the run store keeps them beside the checkpoint).
    """
    in_scope, scope_reason = get_method(run.method).scope(setup.split.spec.kind)
    unlearned_outputs = model_outputs(run.model, setup.bundle, setup.split, setup.device)
    run.outputs = unlearned_outputs
    unlearned = evaluate_outputs(unlearned_outputs, setup.bundle, setup.split, setup.seed)
    report = {
        "method": run.method,
        "params": run.params,
        "dataset": setup.bundle.name,
        "model": setup.model_name,
        "forget": str(setup.split.spec),
        "seed": setup.seed,
        "device": str(setup.device),
        "n_forget": int(len(setup.split.forget_idx)),
        "n_retain": int(len(setup.split.retain_idx)),
        "forgotten_classes": list(setup.split.forgotten_classes),
        "class_names": setup.bundle.class_names,
        "in_scope": in_scope,
        "in_scope_reason": scope_reason,
        "seconds": run.seconds,
        "timing": run.timing,
        "original": setup.metrics("original"),
        "unlearned": unlearned,
    }
    if setup.retrained is not None:
        retrained_outputs = setup.outputs("retrained")
        unlearned["js_forget"] = js_divergence(unlearned_outputs["forget"], retrained_outputs["forget"])
        unlearned["js_test"] = js_divergence(unlearned_outputs["test"], retrained_outputs["test"])
        retrain_seconds = setup.retrained.train_seconds
        retrain_timing = setup.retrained.meta.get("timing")
        mismatch = timing_mismatch(retrain_timing, run.timing) if run.method != "retrain" else None
        keys = avg_gap_keys(setup.split)
        report.update({"retrained": setup.metrics("retrained"), "retrain_seconds": retrain_seconds,
                       "retrain_timing": retrain_timing,
                       "rte": None if mismatch else rte(retrain_seconds, run.seconds),
                       "rte_comparable": mismatch is None,
                       "rte_not_comparable_reason": mismatch,
                       "avg_gap": avg_gap(unlearned, setup.metrics("retrained"), keys),
                       "avg_gap_keys": list(keys)})
        # The original's and the retrained model's own gaps, on the same terms (the tables' reference rows).
        report["original"] = {**report["original"],
                              "avg_gap": avg_gap(setup.metrics("original"), setup.metrics("retrained"), keys)}
    if evidence:
        from unlearn_core.evidence import collect_evidence

        report["evidence"] = collect_evidence(setup, run, evidence)
    return Report.from_dict(clean_json(report))


def unlearn(dataset: str = "mnist5k", model: str | None = None, forget: str | ForgetSpec = "class:3",
            method: str = "finetune", params: dict | None = None, seed: int = 0, device=None,
            progress: ProgressFn | None = None, cancel: threading.Event | None = None, evidence=None,
            evidence_params: dict | None = None) -> tuple[Report, MethodRun, Setup]:
    """Prepare, run one method and evaluate it; returns ``(report, run, setup)``.

    ``evidence`` ("probe,relearn,curves", a list, or None) with ``evidence_params``
    (``{"relearn.lr": 0.05}``) adds the report's ``evidence`` section (docs/EVIDENCE.md).
    """
    from unlearn_core.evidence import EvidenceRequest

    get_method(method).resolve_params(params)  # fail on bad parameters before any training
    request = EvidenceRequest.parse(evidence, evidence_params)  # likewise for bad evidence requests
    setup = prepare(dataset, model, forget, seed, device, progress=progress, cancel=cancel)
    run = run_method(setup, method, params, progress, cancel, evidence=request)
    return build_report(setup, run, evidence=request), run, setup
