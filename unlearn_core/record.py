"""Recording a method run: start a row, run the method, evaluate, save the checkpoint, finish (or fail).

This is the one way a run is recorded, for a single run (the CLI's ``unlearn``,
the app's jobs) and for every run of a sweep: :func:`run_and_record` runs the
method on a prepared setup, :func:`record_outcome` takes a run a sweep task
computed; both end in :func:`finish_run` (the unlearned checkpoint saved
atomically, the row finished), :func:`fail_run` and
:func:`apply_checkpoint_quota`. A cancelled run is recorded as ``cancelled`` and any
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
    config = run_config(setup, method_cls.name, resolved, tag, extra_config, evidence)
    run_id = store.start(config)
    try:
        run = run_method(setup, method_cls.name, resolved, progress, cancel, evidence=evidence)
        if progress is not None:  # its own stage, so a progress bar does not sit still at 100 % meanwhile
            progress(ProgressEvent(stage="evaluate", message="metrics of the unlearned model"))
        report = build_report(setup, run, evidence=evidence).to_dict()
        checkpoint = finish_run(store, run_id, config, report, run.model if save_checkpoint else None,
                                outputs=run.outputs)
    except BaseException as error:
        fail_run(store, run_id, error)
        raise
    if checkpoint is not None:
        apply_checkpoint_quota(store)
    return run_id, report, run


def run_config(setup, method: str, resolved: dict, tag: str | None = None, extra_config: dict | None = None,
               evidence=None) -> dict:
    """The stored config of ``method`` (resolved parameters) run on ``setup`` (an ``EvidenceRequest`` or None)."""
    config = {"dataset": setup.bundle.name, "model": setup.model_name, "forget": str(setup.split.spec),
              "method": method, "params": resolved, "seed": setup.seed, "device": str(setup.device),
              "tag": tag, "recipe": setup.recipe.as_dict(), "original_checkpoint": setup.original.key,
              "retrained_checkpoint": setup.retrained.key if setup.retrained is not None else None,
              "n_forget": int(len(setup.split.forget_idx))}
    if evidence is not None:
        config["evidence"] = evidence.as_dict()
    config.update(extra_config or {})
    return config


def record_outcome(store: RunStore, config: dict, report: dict | None, model=None, error: str | None = None,
                   save_checkpoint: bool = True, outputs: dict | None = None) -> int:
    """Record a run computed elsewhere (a sweep's task) in one go; returns its id.

    ``error`` (one line) records it ``failed``; otherwise ``report`` finishes it
    and ``model`` (anything with a ``state_dict()``), when given and
    ``save_checkpoint``, is saved as its checkpoint, exactly as
    :func:`run_and_record` saves a single run's (with ``outputs`` beside it).
    """
    run_id = store.start(config)
    if error:
        store.fail(run_id, error)
        return run_id
    try:
        checkpoint = finish_run(store, run_id, config, report, model if save_checkpoint else None, outputs=outputs)
    except BaseException as failure:
        fail_run(store, run_id, failure)
        raise
    if checkpoint is not None:
        apply_checkpoint_quota(store)
    return run_id


def finish_run(store: RunStore, run_id: int, config: dict, report: dict, model=None,
               outputs: dict | None = None) -> Path | None:
    """Save ``model`` as the run's checkpoint (atomically; skipped when None) and mark the run ``done``.

    ``outputs`` (the model's softmax outputs, :attr:`unlearn_core.pipeline.MethodRun.outputs`) are kept beside
    the checkpoint (:meth:`~unlearn_core.store.RunStore.save_run_outputs`) when it was saved, so a view of the
    run reads them instead of evaluating the model again; a failure to write them only loses that shortcut.

    A checkpoint that cannot be written (disk full, folder gone) does not fail
    the run: the report took the whole run to compute and fits in a row, so it
    is kept, with ``checkpoint not saved: <reason>`` in the row's ``error``
    column and a :class:`~unlearn_core.store.RunStoreWarning`. Returns the
    checkpoint's path, or None when none was saved.
    """
    from unlearn_core import checkpoints
    from unlearn_core.outputs import describe_os_error

    checkpoint, note = None, None
    if model is not None:
        try:
            checkpoints.save_checkpoint(store.checkpoint_path(run_id), model, {"run_id": run_id, **config})
            checkpoint = store.checkpoint_path(run_id)
            if outputs is not None:
                store.save_run_outputs(run_id, outputs)
        except OSError as error:
            note = f"checkpoint not saved: {describe_os_error(error)}"
            warn(f"run {run_id}: {note}; the report is recorded")
    store.finish(run_id, report, None if checkpoint is None else str(checkpoint), note=note)
    return checkpoint


def fail_run(store: RunStore, run_id: int, error: BaseException) -> None:
    """Record a run that raised: ``cancelled`` for a cancel or an interrupt, else ``failed`` with its message.

    A run that did not finish keeps no checkpoint (a failed or cancelled row never has a model beside it).
    """
    store.remove_run_checkpoint(run_id)
    if isinstance(error, (Cancelled, KeyboardInterrupt)):
        store.fail(run_id, error_text(error) if isinstance(error, Cancelled) else "interrupted", status="cancelled")
    else:
        store.fail(run_id, error_text(error), status="failed")


def apply_checkpoint_quota(store: RunStore) -> None:
    """Prune run checkpoints over the quota; a failure only warns (the run is recorded, a prune must not undo it)."""
    try:
        store.enforce_checkpoint_quota()
    except (UnlearnError, OSError) as error:
        warn(f"the run checkpoint quota could not be applied: {one_line(error)}")
