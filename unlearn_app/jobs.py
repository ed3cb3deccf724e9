"""One background worker for long jobs (training, unlearning runs, UMAP fits).

The dashboard must never block a page on minutes of work, and a widget click
must not discard a job half-way. So long work is submitted here: a single
``ThreadPoolExecutor(max_workers=1)`` runs jobs one after another, each job
publishes a :class:`JobSnapshot` that a UI can poll, and a ``threading.Event``
per job cancels it between steps. Nothing here imports Streamlit.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from unlearn_core.errors import Cancelled, UnlearnError
from unlearn_core.progress import ProgressEvent, StepClock

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)

JobFn = Callable[[Callable[[ProgressEvent], None], threading.Event], Any]

# A job's progress stages grouped into phases a person can tell apart: the first run of a forget set trains
# the retrained reference (minutes) before the method (seconds), then evaluates. Any other stage is the method.
PHASE_OF_STAGE = {"preparing": "preparing", "train original": "original model", "retrain": "retrain reference",
                  "evaluate": "evaluation", "umap": "map", "map": "map"}


def phase_of(stage: str) -> str:
    return PHASE_OF_STAGE.get(stage, "method")


@dataclass
class Phase:
    """One phase of a job, with its own progress and times (a finished phase has ``finished_at``)."""

    name: str
    started_at: float
    finished_at: float | None = None
    fraction: float = 0.0
    text: str = ""

    def seconds(self, now: float | None = None) -> float:
        return (self.finished_at or now or time.time()) - self.started_at


def about_left(seconds: float) -> str:
    """``about 40 s left`` (rounded to 5 s above 20 s: the estimate is not finer), ``about 4 min 30 s left``."""
    seconds = max(0, int(round(seconds)))
    if seconds > 20:
        seconds = 5 * round(seconds / 5)
    if seconds < 120:
        return f"about {seconds} s left"
    return f"about {seconds // 60} min {seconds % 60} s left" if seconds % 60 else f"about {seconds // 60} min left"


class QueueFull(UnlearnError):
    """A session asked for more queued or running jobs than the per-session limit allows."""


def estimate_bytes(obj, _depth: int = 0, _seen: set | None = None) -> int:
    """Bytes held by tensors and arrays inside ``obj`` (modules, dicts, lists, dataclasses), each counted once.

    Used to bound memory by what a cached setup or a finished job holds; plain Python objects count as 0.
    """
    import numpy as np
    import torch

    seen = set() if _seen is None else _seen
    if _depth > 6 or id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return int(obj.numel() * obj.element_size())
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, torch.nn.Module):
        return sum(estimate_bytes(t, _depth + 1, seen) for t in obj.state_dict(keep_vars=True).values())
    if isinstance(obj, dict):
        return sum(estimate_bytes(v, _depth + 1, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return sum(estimate_bytes(v, _depth + 1, seen) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return sum(estimate_bytes(getattr(obj, name, None), _depth + 1, seen) for name in obj.__dataclass_fields__)
    return 0


@dataclass
class JobSnapshot:
    """What a UI shows about a job: status, the latest progress event, the outcome."""

    job_id: int
    label: str
    kind: str
    status: str = QUEUED
    stage: str = ""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    fraction: float = 0.0
    message: str = ""
    error: str = ""
    run_id: int | None = None
    meta: dict = field(default_factory=dict)
    phases: list = field(default_factory=list)
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    # Seconds left in the current stage at its measured cost per step (unlearn_core.progress.StepClock); None
    # until a few steps are measured, and for stages without a known number of steps.
    seconds_left: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def describe(self, ahead: int = 0) -> str:
        """One line such as ``unsc: fine-tune epoch 2/5, loss 0.3121``; ``ahead`` counts jobs queued before it."""
        if self.status == QUEUED:
            return f"{self.label}: waiting for the worker" + (f" ({ahead} job(s) ahead)" if ahead else "")
        if self.status == RUNNING:
            parts = [self.stage or "working"]
            if self.epochs:
                parts.append(f"epoch {self.epoch}/{self.epochs}")
            elif self.steps:
                parts.append(f"step {self.step}/{self.steps}")
            if self.loss is not None:
                parts.append(f"loss {self.loss:.4f}")
            if self.message:
                parts.append(self.message)
            if self.seconds_left is not None and " left" not in self.message:  # a sweep's message states its own
                parts.append(about_left(self.seconds_left))
            return f"{self.label}: " + ", ".join(parts)
        if self.status == DONE:
            took = (self.finished_at or 0) - (self.started_at or 0)
            split = ""
            shown = [p for p in self.phases if p.seconds(self.finished_at) >= 0.05]
            if len(shown) > 1:  # "done in 241 s" alone hid that 228 s of it were the retrained reference
                split = " (" + ", ".join(f"{self.phase_label(p)} {p.seconds(self.finished_at):.1f} s"
                                         for p in shown) + ")"
            return f"{self.label}: done in {took:.1f} s{split}"
        return f"{self.label}: {self.status}" + (f" ({self.error})" if self.error else "")

    def phase_label(self, phase: Phase) -> str:
        """A phase's name for people: the method phase is named after the method."""
        return (self.meta.get("method") or "method") if phase.name == "method" else phase.name


class Job:
    """A submitted job: its cancel event, its future and a thread-safe snapshot."""

    def __init__(self, job_id: int, label: str, kind: str, meta: dict | None = None):
        self.cancel_event = threading.Event()
        self.future: Future | None = None
        self.result: Any = None
        self._lock = threading.Lock()
        self._state = JobSnapshot(job_id, label, kind, meta=dict(meta or {}))
        self._clock = StepClock()

    @property
    def job_id(self) -> int:
        return self._state.job_id

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return replace(self._state, meta=dict(self._state.meta),
                           phases=[replace(p) for p in self._state.phases])

    def update(self, **fields) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self._state, key, value)

    def on_progress(self, event: ProgressEvent) -> None:
        """The progress callback handed to the core; it also keeps one :class:`Phase` per phase of the job."""
        now = time.time()
        with self._lock:
            phases = self._state.phases
            name = phase_of(event.stage)
            if not phases or phases[-1].name != name:
                if phases and phases[-1].finished_at is None:
                    phases[-1].finished_at, phases[-1].fraction = now, 1.0
                phases.append(Phase(name, now))
            phases[-1].fraction = event.fraction
            phases[-1].text = event.stage + (f": {event.message}" if event.message else "")
            left = self._clock.update(event)
        self.update(stage=event.stage, epoch=event.epoch, epochs=event.epochs, step=event.step, steps=event.steps,
                    loss=event.loss, fraction=event.fraction, message=event.message, seconds_left=left)

    def close_phase(self, done: bool) -> None:
        with self._lock:
            if self._state.phases and self._state.phases[-1].finished_at is None:
                self._state.phases[-1].finished_at = time.time()
                if done:
                    self._state.phases[-1].fraction = 1.0

    def cancel(self) -> None:
        self.cancel_event.set()
        if self.future is not None and self.future.cancel():
            self.update(status=CANCELLED, error="cancelled before it started", finished_at=time.time())


class JobRunner:
    """A single worker thread with a list of every job it was given.

    Limits (0 or ``None``: none): ``max_per_owner`` unfinished jobs per owner
    (``meta["owner"]``, a browser session): one session queued 52 runs in four
    clicks into the worker everyone shares. ``results_bytes``: finished jobs keep
    their results (models, artifacts) only while all of them together stay under
    this, oldest let go first; the job itself stays listed, without its result.
    ``history``: at most this many finished jobs are listed per owner (one busy session used to push every other
    session's jobs out of a shared list of 200), and ``history_total`` in all, oldest let go first.
    """

    def __init__(self, history: int = 200, max_per_owner: int | None = None, results_bytes: int | None = None,
                 history_total: int = 10_000, max_trainings_per_owner: int | None = None,
                 max_queued_trainings: int | None = None, disk_check: Callable[[], str | None] | None = None):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unlearn-job")
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._history = history
        self._history_total = history_total
        self.max_per_owner = max_per_owner or None
        self.results_bytes = results_bytes or None
        self.max_trainings_per_owner = max_trainings_per_owner or None
        self.max_queued_trainings = max_queued_trainings or None
        self.disk_check = disk_check
        self._result_sizes: dict[int, int] = {}

    def room(self, owner: str) -> int | None:
        """How many more jobs ``owner`` may queue now (``None``: no limit)."""
        if self.max_per_owner is None:
            return None
        return max(0, self.max_per_owner - len(self.active(owner=owner)))

    def check(self, owner: str | None, trainings: int = 1, jobs: int = 1) -> None:
        """Raise :class:`QueueFull` (one line) unless ``owner`` may queue ``jobs`` jobs doing ``trainings`` in all.

        The same rules as :meth:`submit`, checked for a whole batch before any of it is queued.
        """
        with self._lock:
            self._check_locked(owner, int(trainings), int(jobs))

    def _check_locked(self, owner: str | None, cost: int, jobs: int = 1) -> None:
        reason = self.disk_check() if self.disk_check is not None and cost > 0 else None
        if reason:
            raise QueueFull(reason)
        unfinished = [j.snapshot() for j in self._jobs.values() if not j.snapshot().finished]
        if owner is not None and self.max_per_owner is not None:
            mine = sum(1 for snap in unfinished if snap.meta.get("owner") == owner)
            if mine + jobs > self.max_per_owner:
                raise QueueFull(f"this session may have {self.max_per_owner} runs queued or running at once "
                                f"({mine} now, {jobs} more asked); wait for some to finish or cancel them (the "
                                "server's UNLEARN_MAX_JOBS_PER_SESSION sets the limit)")
        if owner is not None and self.max_trainings_per_owner is not None:
            mine = sum(int(snap.meta.get("trainings", 1)) for snap in unfinished if snap.meta.get("owner") == owner)
            if mine + cost > self.max_trainings_per_owner:
                raise QueueFull(f"this session has {mine} model training(s) queued or running and this asks "
                                f"for {cost} more, over the {self.max_trainings_per_owner} a session may have "
                                "(UNLEARN_MAX_TRAININGS_PER_SESSION); wait for them to finish")
        if self.max_queued_trainings is not None:
            queued = sum(int(snap.meta.get("trainings", 1)) for snap in unfinished)
            if queued + cost > self.max_queued_trainings:
                raise QueueFull(f"the server has {queued} model training(s) queued or running and this asks "
                                f"for {cost} more, over its limit of {self.max_queued_trainings} for everyone "
                                "together (UNLEARN_SERVER_MAX_QUEUED_TRAININGS); try again when some finish")

    def submit(self, label: str, fn: JobFn, kind: str = "work", meta: dict | None = None) -> Job:
        """Queue ``fn(progress, cancel)``; its return value lands in ``job.result``.

        ``meta["trainings"]`` is what the job will train (a :class:`~unlearn_core.cost.WorkCost`'s ``trainings``;
        1 when not given). Raises :class:`QueueFull` with one line when ``meta["owner"]`` already has
        ``max_per_owner`` unfinished jobs, when its unfinished trainings would pass ``max_trainings_per_owner``,
        when everyone's together would pass ``max_queued_trainings`` (the server-wide budget: a new browser
        session is not a new budget), or when ``disk_check`` says the disk is full of pinned files.
        """
        owner = (meta or {}).get("owner")
        cost = int((meta or {}).get("trainings", 1))
        with self._lock:
            self._check_locked(owner, cost)
            job = Job(next(self._ids), label, kind, meta)
            self._jobs[job.job_id] = job
            self._prune()
        job.future = self._executor.submit(self._run, job, fn)
        return job

    def _prune(self) -> None:
        """Let go of the oldest finished jobs beyond ``history`` per owner and ``history_total`` in all (locked)."""
        kept_total, kept_by_owner = 0, {}
        for job_id in sorted(self._jobs, reverse=True):  # newest first
            snap = self._jobs[job_id].snapshot()
            if not snap.finished:
                continue
            owner = snap.meta.get("owner")
            kept_by_owner[owner] = kept_by_owner.get(owner, 0) + 1
            if kept_by_owner[owner] > self._history or kept_total >= self._history_total:
                del self._jobs[job_id]
                self._result_sizes.pop(job_id, None)
            else:
                kept_total += 1

    def _bound_results(self, finished: Job) -> None:
        """Account ``finished``'s result and drop the oldest finished results while over ``results_bytes``."""
        if self.results_bytes is None:
            return
        size = estimate_bytes(finished.result)
        with self._lock:
            self._result_sizes[finished.job_id] = size
            total = sum(self._result_sizes.values())
            for job_id in sorted(self._result_sizes):
                if total <= self.results_bytes:
                    break
                job = self._jobs.get(job_id)
                total -= self._result_sizes.pop(job_id)
                if job is not None:
                    job.result = None
                    job.update(meta={**job.snapshot().meta, "result_dropped": True})

    def results_nbytes(self) -> int:
        with self._lock:
            return sum(self._result_sizes.values())

    def _run(self, job: Job, fn: JobFn) -> None:
        if job.cancel_event.is_set():
            job.update(status=CANCELLED, error="cancelled before it started", finished_at=time.time())
            return
        started = time.time()
        # Until the first progress event the job loads data and models: its own phase, so every second is counted.
        job.update(status=RUNNING, started_at=started, phases=[Phase("preparing", started)])
        try:
            job.result = fn(job.on_progress, job.cancel_event)
        except Cancelled:
            job.update(status=CANCELLED, error="cancelled", finished_at=time.time())
        except UnlearnError as error:
            job.update(status=FAILED, error=str(error), finished_at=time.time())
        except Exception as error:  # a bug must not kill the worker; the UI shows it as a failed job
            log.error("job %s failed:\n%s", job.snapshot().label, traceback.format_exc())
            job.update(status=FAILED, error=f"{type(error).__name__}: {error}", finished_at=time.time())
        else:
            run_id = job.result[0] if job.snapshot().kind == "run" and isinstance(job.result, tuple) else None
            job.close_phase(done=True)
            # Bounded before the job shows as done, so no reader ever sees the cache over its limit.
            self._bound_results(job)
            job.update(status=DONE, fraction=1.0, finished_at=time.time(), run_id=run_id)
        finally:
            job.close_phase(done=False)
        with self._lock:
            self._prune()  # now that this one counts as finished

    def submit_run(self, setup_provider: Callable, method: str, params: dict | None = None, store=None,
                   label: str | None = None, meta: dict | None = None, extra_config: dict | None = None,
                   evidence=None, after: Callable | None = None) -> Job:
        """Queue one unlearning run, recorded in the run store.

        ``setup_provider(progress, cancel)`` returns the prepared
        :class:`~unlearn_core.pipeline.Setup`; it runs inside the job so the
        first request's training (original and retrained reference) also
        reports progress and can be cancelled. ``evidence`` (kinds, e.g.
        ``"probe,relearn,curves"``) is passed to ``run_and_record``. ``after(setup, result, progress)`` runs in
        the job once the run is recorded (outside the method's timing), e.g. to store the run's maps; an error
        there is logged and leaves the recorded run as it is.
        """
        from unlearn_core import record

        def work(progress, cancel):
            setup = setup_provider(progress, cancel)
            # The method's phase starts here, not at its first progress report (UNSC builds its subspaces first).
            progress(ProgressEvent(stage="method", message=f"starting {method}"))
            result = record.run_and_record(setup, method, params, progress=progress, cancel=cancel, store=store,
                                           extra_config=extra_config, evidence=evidence or None)
            if after is not None:
                try:
                    after(setup, result, progress)
                except Exception:  # the run is recorded; what `after` adds is computed again where it is needed
                    log.warning("after run #%s:\n%s", result[0], traceback.format_exc())
            return result

        return self.submit(label or method, work, kind="run", meta={"method": method, **(meta or {})})

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, kind: str | None = None, owner: str | None = None) -> list[Job]:
        """Jobs in submission order, optionally only one kind and one owner (``meta["owner"]``)."""
        with self._lock:
            jobs = [self._jobs[k] for k in sorted(self._jobs)]
        return [j for j in jobs if (kind is None or j.snapshot().kind == kind)
                and (owner is None or j.snapshot().meta.get("owner") == owner)]

    def active(self, kind: str | None = None, owner: str | None = None) -> list[Job]:
        return [j for j in self.jobs(kind, owner) if not j.snapshot().finished]

    def run_artifacts(self, run_id: int, owner: str | None = None) -> dict | None:
        """Artifacts of stored run ``run_id`` if a run job of ``owner`` (any owner: ``None``) finished it here."""
        for job in self.jobs("run", owner):
            if job.snapshot().run_id == run_id and isinstance(job.result, tuple):
                return job.result[2].artifacts
        return None

    def ahead_of(self, job: Job) -> int:
        """Unfinished jobs of any kind and owner submitted before ``job``: what it waits for in the one worker."""
        return sum(1 for other in self.active() if other.job_id < job.job_id)

    def cancel_all(self, kind: str | None = None) -> int:
        active = self.active(kind)
        for job in active:
            job.cancel()
        return len(active)

    def wait(self, job: Job, timeout: float | None = None) -> JobSnapshot:
        """Block until ``job`` ends (for scripts and tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not job.snapshot().finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job.job_id} still {job.snapshot().status} after {timeout} s")
            time.sleep(0.02)
        return job.snapshot()

    def shutdown(self) -> None:
        self.cancel_all()
        self._executor.shutdown(wait=True, cancel_futures=True)
