"""Background jobs for long work (training, unlearning runs, UMAP fits).

The dashboard must never block a page on minutes of work, and a widget click
must not discard a job half-way. So long work is submitted here: a fair queue
(:class:`unlearn_app.dispatch.Dispatcher`) runs jobs on as many driver threads
as the engine has slots (one for the default ``inline`` engine: one job after
another), each job publishes a :class:`JobSnapshot` that a UI can poll, and a
``threading.Event`` per job cancels it between steps. With the ``ray`` engine a
run job executes as a Ray task and its driver thread relays progress and cancel
(:mod:`unlearn_app.dispatch`). Nothing here imports Streamlit.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from concurrent.futures import Future
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


class DuplicateRun(UnlearnError):
    """A session asked again for a run it already has queued or running (same setting, method, params, seed)."""


def run_fingerprint(dataset: str, model: str, forget: str, seed: int, method: str, params: dict,
                    original: str = "") -> str:
    """What makes two runs the same run: the setting (data set, model, forget set, seed, uploaded original's
    SHA-256 or "" for the trained one), the method and its resolved parameters, as one canonical JSON text."""
    import json

    return json.dumps({"dataset": dataset, "model": model, "forget": forget, "seed": int(seed), "method": method,
                       "params": params or {}, "original": original or ""}, sort_keys=True, default=str)


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

    def describe(self, ahead: int = 0, eta: float | None = None) -> str:
        """One line such as ``unsc: fine-tune epoch 2/5, loss 0.3121``; ``ahead`` counts jobs queued before it,
        ``eta`` the seconds it is expected to wait and run (:meth:`JobRunner.wait_estimate`)."""
        if self.status == QUEUED:
            waits = [f"{ahead} job(s) ahead"] if ahead else []
            if eta is not None:
                waits.append(f"done in about {_duration(eta)}")
            return f"{self.label}: waiting for the worker" + (f" ({', '.join(waits)})" if waits else "")
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


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


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
    """Jobs run by an engine (``inline``: one worker thread; ``ray``: Ray tasks), with a list of every job.

    ``engine`` (:mod:`unlearn_app.dispatch`; default the inline engine) says where run jobs execute;
    ``max_running`` jobs run at once (0 or ``None``: the engine's slots), ``max_running_per_visitor`` of one
    owner (0 or ``None``: no limit), oldest first among the owners below their limit.

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
                 max_queued_trainings: int | None = None, disk_check: Callable[[], str | None] | None = None,
                 engine=None, max_running: int | None = None, max_running_per_visitor: int | None = None):
        from unlearn_app.dispatch import Dispatcher, InlineEngine

        self.engine = engine if engine is not None else InlineEngine()
        self._max_running = max_running or None
        self._max_running_per_visitor = max_running_per_visitor or None
        self._dispatcher: Dispatcher | None = None
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

    def check(self, owner: str | None, trainings: int = 1, jobs: int = 1, fingerprints=()) -> None:
        """Raise :class:`QueueFull` (one line) unless ``owner`` may queue ``jobs`` jobs doing ``trainings`` in all,
        or :class:`DuplicateRun` when one of ``fingerprints`` (:func:`run_fingerprint`) is already queued or running.

        The same rules as :meth:`submit`, checked for a whole batch before any of it is queued.
        """
        with self._lock:
            self._check_locked(owner, int(trainings), int(jobs), tuple(fingerprints))

    def _check_locked(self, owner: str | None, cost: int, jobs: int = 1, fingerprints: tuple = ()) -> None:
        if fingerprints:
            self._refuse_duplicates(owner, fingerprints)
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

    def _refuse_duplicates(self, owner: str | None, fingerprints: tuple) -> None:
        """Raise :class:`DuplicateRun` when an unfinished job of ``owner`` (anyone's: ``None``) has one of
        ``fingerprints``: a double click or a second identical submission must not queue the same runs twice.
        Called with the lock held."""
        wanted = set(fingerprints)
        for job in self._jobs.values():
            snap = job.snapshot()
            if snap.finished or snap.meta.get("fingerprint") not in wanted:
                continue
            if owner is None or snap.meta.get("owner") == owner:
                raise DuplicateRun(f"nothing was queued: an identical run ({snap.meta.get('method') or snap.label}, "
                                   f"same setting, parameters and seed) is already {snap.status} as job "
                                   f"#{snap.job_id}; wait for it to finish or cancel it")

    def submit(self, label: str, fn: JobFn, kind: str = "work", meta: dict | None = None) -> Job:
        """Queue ``fn(progress, cancel)``; its return value lands in ``job.result``.

        ``meta["trainings"]`` is what the job will train (a :class:`~unlearn_core.cost.WorkCost`'s ``trainings``;
        1 when not given). Raises :class:`QueueFull` with one line when ``meta["owner"]`` already has
        ``max_per_owner`` unfinished jobs, when its unfinished trainings would pass ``max_trainings_per_owner``,
        when everyone's together would pass ``max_queued_trainings`` (the server-wide budget: a new browser
        session is not a new budget), or when ``disk_check`` says the disk is full of pinned files; raises
        :class:`DuplicateRun` when ``meta["fingerprint"]`` is that of an unfinished job of the same owner.
        """
        owner = (meta or {}).get("owner")
        cost = int((meta or {}).get("trainings", 1))
        fingerprint = (meta or {}).get("fingerprint")
        with self._lock:
            self._check_locked(owner, cost, fingerprints=(fingerprint,) if fingerprint else ())
            job = Job(next(self._ids), label, kind, meta)
            self._jobs[job.job_id] = job
            self._prune()
        job.future = self.dispatcher().submit(owner, lambda: self._run(job, fn))
        return job

    def submit_setup(self, label: str, fn: JobFn, meta: dict | None = None, original: dict | None = None) -> Job:
        """Queue a setup job: ``fn(progress, cancel)`` prepares the setup here (its value lands in ``job.result``).

        ``original`` (``{"dataset", "model", "seed", "device"}``) names the original model ``fn`` will need: on an
        engine that runs elsewhere (``ray``) it is trained there first, as a task, and put in this process's
        checkpoint cache, so ``fn`` only loads it. Limits and errors as :meth:`submit`.
        """
        if original is None or not self.engine.remote_runs:
            return self.submit(label, fn, kind="setup", meta=meta)
        from types import SimpleNamespace

        from unlearn_app.dispatch import train_original_remote

        def remote(progress, cancel):
            train_original_remote(self.engine, SimpleNamespace(on_progress=progress, cancel_event=cancel),
                                  **original)
            return fn(progress, cancel)

        return self.submit(label, remote, kind="setup", meta=meta)

    def dispatcher(self):
        """The queue (made at the first job: sizing it may start the engine)."""
        if self._dispatcher is None:
            from unlearn_app.dispatch import Dispatcher

            slots = self._max_running or self.engine.slots()  # outside the lock: it may start Ray
            with self._lock:
                if self._dispatcher is None:
                    self._dispatcher = Dispatcher(slots, self._max_running_per_visitor)
        return self._dispatcher

    @property
    def slots(self) -> int:
        return self.dispatcher().slots

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
                   evidence=None, request: dict | None = None, after: Callable | None = None) -> Job:
        """Queue one unlearning run, recorded in the run store.

        ``setup_provider(progress, cancel)`` returns the prepared
        :class:`~unlearn_core.pipeline.Setup`; it runs inside the job so the
        first request's training (original and retrained reference) also
        reports progress and can be cancelled. ``evidence`` (kinds, e.g.
        ``"probe,relearn,curves"``) is passed to ``run_and_record``.
        ``request`` (:func:`unlearn_core.sweeps.single.run_request`: the same
        choice as plain data) lets an engine that runs elsewhere (``ray``) run
        it as a task; without one, or on the inline engine, the run executes
        here with ``setup_provider``. Either way this process records it.
        ``after(setup, result, progress)`` runs in the job once a run executed
        here is recorded (outside the method's timing), e.g. to store the run's
        maps; an error there is logged and leaves the recorded run as it is. A
        run on a remote engine has no setup here: the page computes what
        ``after`` would have stored when it is first viewed.
        """
        from unlearn_core import record

        if request is not None and self.engine.remote_runs:
            from types import SimpleNamespace

            from unlearn_app.dispatch import run_remote

            full = {**request, "method": method, "params": dict(params or {}), "evidence": evidence or None,
                    "extra_config": {**request.get("extra_config", {}), **(extra_config or {})}}

            def remote(progress, cancel):
                return run_remote(self.engine, SimpleNamespace(on_progress=progress, cancel_event=cancel), full,
                                  store)

            return self.submit(label or method, remote, kind="run", meta={"method": method, **(meta or {})})

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
        """Unfinished jobs of any kind and owner submitted before ``job``: what it waits for in the queue."""
        return sum(1 for other in self.active() if other.job_id < job.job_id)

    def wait_estimate(self, job: Job, recent: int = 20) -> tuple[int, float | None]:
        """``(ahead, seconds)``: the jobs before ``job`` in the queue, and when it should be done.

        ``seconds`` is ``(max(0, ahead - slots + 1) / slots + 1) * m`` (its turn in ``slots`` parallel slots,
        then its own run), ``m`` the mean time from start to end of the last ``recent`` finished jobs of its
        kind; ``None`` before any such job finished or once ``job`` runs.
        """
        ahead = self.ahead_of(job)
        snap = job.snapshot()
        if snap.status != QUEUED:
            return ahead, None
        took = [s.finished_at - s.started_at for s in (j.snapshot() for j in self.jobs(snap.kind))
                if s.status == DONE and s.started_at and s.finished_at][-recent:]
        if not took:
            return ahead, None
        slots = self.slots
        mean = sum(took) / len(took)
        return ahead, (max(0, ahead - slots + 1) / slots + 1) * mean

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
        """Cancel every job, wait for the running ones to stop, close the engine (a Ray session it started)."""
        self.cancel_all()
        if self._dispatcher is not None:
            self._dispatcher.shutdown(wait=True)
        self.engine.close()
