"""The :class:`JobRunner`: a fair queue of background jobs on the engine's slots, with per-session limits,
bounded history and results, and the run and setup jobs the dashboard submits."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from typing import Callable

from unlearn_core.errors import Cancelled, UnlearnError
from unlearn_core.progress import ProgressEvent
from unlearn_app.jobs.limits import DuplicateRun, QueueFull, estimate_bytes
from unlearn_app.jobs.records import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobFn, JobSnapshot, Phase

log = logging.getLogger(__name__)


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
