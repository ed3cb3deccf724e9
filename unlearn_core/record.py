"""Recording a method run: start a row, run the method, evaluate, save the checkpoint, finish (or fail).

This is the one way a run is recorded, for a single run (the CLI's ``unlearn``,
the app's jobs) and for every run of a sweep: :func:`run_and_record` computes
the run on a prepared setup and hands its result to :func:`record_result`,
which saves the unlearned checkpoint atomically, finishes the row and applies
the run-checkpoint quota. A cancelled run is recorded as ``cancelled`` and any
other error as ``failed`` (with its message); a failed or cancelled row never
keeps a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from unlearn_core.errors import Cancelled, UnlearnError
from unlearn_core.jsonsafe import error_text, one_line
from unlearn_core.store import RunStore, run_checkpoint_quota_bytes
from unlearn_core.store.common import warn


def run_and_record(setup, method: str, params: dict | None = None, progress=None, cancel=None,
                   store: RunStore | None = None, save_checkpoint: bool = True, tag: str | None = None,
                   extra_config: dict | None = None, evidence=None):
    """Run one method on a prepared setup and record it; returns ``(run_id, report, method_run)``.

    start -> ``pipeline.run_method`` -> ``pipeline.build_report`` -> the
    unlearned checkpoint saved atomically -> finish. A cancelled run is
    recorded as ``cancelled`` and any other error as ``failed`` (with its
    message); both re-raise. Bad parameters raise before anything is recorded.
    ``evidence`` (kinds or an ``EvidenceRequest``) adds the report's evidence section.
    """
    from unlearn_core import checkpoints
    from unlearn_core.evidence import EvidenceRequest
    from unlearn_core.methods import get_method
    from unlearn_core.pipeline import build_report, run_method
    from unlearn_core.progress import ProgressEvent

    store = store or RunStore()
    method_cls = get_method(method)
    resolved = method_cls.resolve_params(params)
    if save_checkpoint:
        run_checkpoint_quota_bytes()  # a bad quota setting fails here, not after the run's work
    evidence = EvidenceRequest.parse(evidence)
    config = {"dataset": setup.bundle.name, "model": setup.model_name, "forget": str(setup.split.spec),
              "method": method_cls.name, "params": resolved, "seed": setup.seed, "device": str(setup.device),
              "tag": tag, "recipe": setup.recipe.as_dict(), "original_checkpoint": setup.original.key,
              "retrained_checkpoint": setup.retrained.key if setup.retrained is not None else None,
              "n_forget": int(len(setup.split.forget_idx))}
    if evidence is not None:
        config["evidence"] = evidence.as_dict()
    config.update(extra_config or {})
    run_id = store.start(config)
    checkpoint = None
    try:
        run = run_method(setup, method_cls.name, resolved, progress, cancel, evidence=evidence)
        if progress is not None:  # its own stage, so a progress bar does not sit still at 100 % meanwhile
            progress(ProgressEvent(stage="evaluate", message="metrics of the unlearned model"))
        report = build_report(setup, run, evidence=evidence)
        note = None
        if save_checkpoint:
            try:
                checkpoints.save_checkpoint(store.checkpoint_path(run_id), run.model, {"run_id": run_id, **config})
                checkpoint = store.checkpoint_path(run_id)
            except OSError as error:
                # Disk full or the folder gone: the report took the whole run to compute and fits in a row;
                # keep it, say the checkpoint is missing, rather than fail the run for its model file.
                from unlearn_core.outputs import describe_os_error

                note = f"checkpoint not saved: {describe_os_error(error)}"
                warn(f"run {run_id}: {note}; the report is recorded")
        store.finish(run_id, report, None if checkpoint is None else str(checkpoint), note=note)
    except (Cancelled, KeyboardInterrupt) as error:
        _discard_checkpoint(store, run_id, checkpoint)
        store.fail(run_id, error_text(error) if isinstance(error, Cancelled) else "interrupted", status="cancelled")
        raise
    except BaseException as error:
        _discard_checkpoint(store, run_id, checkpoint)
        store.fail(run_id, error_text(error), status="failed")
        raise
    if checkpoint is not None:
        try:
            store.enforce_checkpoint_quota()
        except (UnlearnError, OSError) as error:  # the run is recorded; a failed prune must not undo that
            warn(f"the run checkpoint quota could not be applied: {one_line(error)}")
    return run_id, report, run


def _discard_checkpoint(store: RunStore, run_id: int, checkpoint: Path | None) -> None:
    """A run that did not finish keeps no checkpoint (a failed or cancelled row never has a model beside it)."""
    if checkpoint is not None:
        store._remove_run_checkpoint(run_id)
