"""Background jobs for long work (training, unlearning runs, UMAP fits).

The dashboard must never block a page on minutes of work, and a widget click
must not discard a job half-way. So long work is submitted here: a fair queue
(:class:`unlearn_app.dispatch.Dispatcher`) runs jobs on as many driver threads
as the engine has slots (one for the default ``inline`` engine: one job after
another), each job publishes a :class:`JobSnapshot` that a UI can poll, and a
``threading.Event`` per job cancels it between steps. With the ``ray`` engine a
run job executes as a Ray task and its driver thread relays progress and cancel
(:mod:`unlearn_app.dispatch`). Nothing here imports Streamlit.

- :mod:`~unlearn_app.jobs.records`: a job's states, phases, snapshot and the thread-safe :class:`Job`;
- :mod:`~unlearn_app.jobs.limits`: what a runner refuses (:class:`QueueFull`, :class:`DuplicateRun`) and counts
  (:func:`run_fingerprint`, :func:`estimate_bytes`);
- :mod:`~unlearn_app.jobs.runner`: the :class:`JobRunner`.
"""

from unlearn_app.jobs.limits import DuplicateRun, QueueFull, estimate_bytes, run_fingerprint
from unlearn_app.jobs.records import (CANCELLED, DONE, FAILED, FINISHED, PHASE_OF_STAGE, QUEUED, RUNNING, Job, JobFn,
                                      JobSnapshot, Phase, about_left, phase_of)
from unlearn_app.jobs.runner import JobRunner

__all__ = ["CANCELLED", "DONE", "FAILED", "FINISHED", "PHASE_OF_STAGE", "QUEUED", "RUNNING", "DuplicateRun", "Job",
           "JobFn", "JobRunner", "JobSnapshot", "Phase", "QueueFull", "about_left", "estimate_bytes", "phase_of",
           "run_fingerprint"]
