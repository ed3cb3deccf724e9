"""Queue a sweep in the app's job runner: the Sweeps page's launches and Results' "compute the ensemble"."""

from __future__ import annotations

import logging

from unlearn_app.jobs import Job, JobRunner

log = logging.getLogger(__name__)


def submit_sweep(runner: JobRunner, spec, store, owner: str | None, trainings: int, kind: str = "sweep",
                 label: str | None = None) -> Job:
    """Save the sweep's row first (a server killed before it ends lists it as interrupted, and the same tag
    resumes it: runs already stored are reused by key), then queue :func:`~unlearn_core.sweeps.run_sweep` on
    the inline engine. ``trainings`` is what the sweep will train (its cost against the session's budgets);
    raises :class:`~unlearn_app.jobs.QueueFull` (an ``UnlearnError``) when the budgets refuse it."""
    from unlearn_core.sweeps import run_sweep

    runner.check(owner, trainings)
    store.save_sweep(spec.tag, "sweep", spec.as_dict())

    def work(progress, cancel, spec=spec, store=store):
        return run_sweep(spec, engine="inline", store=store, progress=progress, cancel=cancel, log=log.info)

    return runner.submit(label or f"sweep {spec.tag}", work, kind=kind,
                         meta={"owner": owner, "method": kind, "tag": spec.tag, "trainings": trainings})
