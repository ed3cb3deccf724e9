"""What runs inside a task (a Ray worker, or this process for the inline engine): training the original and
retrained models, and one method run evaluated into a report.
"""

from __future__ import annotations

import os
import threading
import time

from unlearn_core.errors import Cancelled
from unlearn_core.progress import ProgressFn
from unlearn_core.raycluster import node_id


# -- work done in a task (a Ray worker, or this process for the inline engine) -------------------------------------
def _one_thread(threads: int | None) -> None:
    # Several runs share a machine; one torch thread each makes them not fight over cores.
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def train_model(kind: str, dataset: str, model: str, forget: str, seed: int, recipe: dict, device: str,
                threads: int | None = None):
    """Train (or load from this node's cache) the original or a retrained model.

    Returns ``(blob, info)``: ``blob`` carries the weights to the runs through
    the object store, ``info`` is the small part the driver reads.
    """
    from unlearn_core.data import load_dataset
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.training import TrainRecipe, get_original, get_retrained

    _one_thread(threads)
    bundle = load_dataset(dataset)
    recipe_obj = TrainRecipe(**recipe)
    if kind == "original":
        trained = get_original(bundle, model, seed, recipe_obj, device)
    else:
        from unlearn_core.device import timing_conditions

        split = ForgetSpec.parse(forget).resolve(bundle, seed)
        # Timed under this task's conditions (device, threads), so each run's speed-up divides like for like.
        trained = get_retrained(bundle, split, model, seed, recipe_obj, device,
                                retime_for=timing_conditions(device))
    state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
    info = {"kind": kind, "forget": forget, "seed": seed, "key": trained.key, "from_cache": trained.from_cache,
            "train_seconds": trained.train_seconds, "pid": os.getpid(), "node_id": node_id()}
    return {"key": trained.key, "meta": trained.meta, "state": state}, info


def _trained_from_blob(blob: dict, bundle, model_name: str, seed: int, device):
    from unlearn_core.checkpoints import load_state_strict
    from unlearn_core.models import build_for_dataset
    from unlearn_core.training import TrainedModel

    model = build_for_dataset(model_name, bundle, seed=seed)
    load_state_strict(model, blob["state"])
    model.to(device).eval()
    return TrainedModel(model, blob["key"], dict(blob["meta"]), True, 0.0)


def _ensure_cached(trained) -> None:
    """Put a model that came through the object store into this node's checkpoint cache.

    The ``retrain`` method reads its model from the cache; on a cluster node that
    never trained it, it would otherwise train it again.
    """
    from unlearn_core.checkpoints import CheckpointCache

    cache = CheckpointCache()
    if not cache.path_for(trained.key).exists():
        with cache.lock(trained.key):
            if not cache.path_for(trained.key).exists():
                cache.save(trained.key, trained.model, trained.meta)


def execute_run(run: dict, original: dict, retrained: dict, device: str, threads: int | None = None,
                save_state: bool = True, progress: ProgressFn | None = None,
                cancel: threading.Event | None = None) -> dict:
    """One method run on models handed in as blobs; returns the report (and weights) or the error.

    A method's own failure (divergence, bad request) comes back as ``error`` so
    the sweep records it and goes on; Ray retries only a worker that died.
    ``run["evidence"]`` adds the report's evidence section; ``run["verdict_outputs"]``
    keeps the model's :func:`~unlearn_core.evidence.run_outputs` (its logit-scaled
    confidence on every forget sample and on the forget set's fixed retain and
    validation samples, :func:`~unlearn_core.evidence.verdict_samples`) as the
    report's ``verdict_outputs``, with the forget set's ``verdict_split_key``,
    for the ensemble verdicts of :func:`sweep_result`. The sample draw is a
    function of the forget set alone, so every task of a forget set reads the
    same samples. ``run["original_seed"]`` names the original model's seed when
    it is not the run's (the ``competition`` protocol).
    """
    import torch

    from unlearn_core.data import load_dataset
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.pipeline import Setup, build_report, run_method
    from unlearn_core.jsonsafe import error_text
    from unlearn_core.training import TrainRecipe

    _one_thread(threads)
    started = time.perf_counter()
    out = {"key": run["key"], "forget": run["forget"], "seed": run["seed"], "pid": os.getpid(),
           "node_id": node_id(), "report": None, "state": None, "error": None}
    try:
        device = torch.device(device)
        bundle = load_dataset(run["dataset"])
        split = ForgetSpec.parse(run["forget"]).resolve(bundle, run["seed"])
        original_model = _trained_from_blob(original, bundle, run["model"], run.get("original_seed", run["seed"]),
                                            device)
        retrained_model = _trained_from_blob(retrained, bundle, run["model"], run["seed"], device)
        if run["method"] == "retrain":
            _ensure_cached(retrained_model)
        setup = Setup(bundle, split, run["model"], run["seed"], device, TrainRecipe(**run["recipe"]),
                      original_model, retrained_model)
        evidence = None
        if run.get("evidence"):
            from unlearn_core.evidence import EvidenceRequest

            evidence = EvidenceRequest(tuple(run["evidence"]["kinds"]), run["evidence"]["params"])
        result = run_method(setup, run["method"], run["params"], progress, cancel, evidence=evidence)
        report = build_report(setup, result, evidence=evidence)
        # A task hands back plain data (it crosses Ray's object store and the search's JSON): the report's dict.
        out["report"] = report.to_dict() if hasattr(report, "to_dict") else report
        if run.get("verdict_outputs"):
            from unlearn_core.evidence import run_outputs, verdict_samples

            outputs = run_outputs(result.model, bundle, split, device, verdict_samples(bundle, split)).to_dict()
            # Five decimals of a logit are far below any threshold's or bin's resolution, and keep the report small.
            for part in outputs.values():
                part["phi"] = [round(v, 5) for v in part["phi"]]
            out["report"]["verdict_outputs"] = outputs
            out["report"]["verdict_split_key"] = split.key()
        if save_state:
            out["state"] = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    except Cancelled:
        raise
    except Exception as error:  # the sweep records the failure and goes on
        out["error"] = error_text(error)
    out["wall_seconds"] = time.perf_counter() - started
    return out


class StateHolder:
    """Just enough of an ``nn.Module`` for ``save_checkpoint``: a state dict."""

    def __init__(self, state: dict):
        self._state = state

    def state_dict(self) -> dict:
        return self._state
