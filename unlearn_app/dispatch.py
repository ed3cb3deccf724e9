"""Where the dashboard's jobs execute: a fair queue of driver threads, and the engine a run is handed to.

:class:`Dispatcher` runs queued calls on at most ``slots`` driver threads, oldest first among the jobs whose owner
(a browser session) has fewer than ``per_owner`` running: with one slot and one visitor it is the single
background worker; with many visitors a session's second run waits while other sessions' first runs go. It
hands out a ``concurrent.futures.Future`` per call (``cancel()`` succeeds while the call waits).

Engines (:func:`make_engine`, from ``UNLEARN_ENGINE``):

- :class:`InlineEngine` (``inline``, the default): a run's work is the job's own function, in the driver thread,
  in this process; no Ray is imported. One slot.
- :class:`RayEngine` (``ray``): a run is a Ray task (:func:`unlearn_core.sweeps.single.run_task`) in the session
  :func:`unlearn_core.raycluster.connect` opens: a local instance bound to 127.0.0.1 (``UNLEARN_RAY_ADDRESS``
  empty) or the cluster at that address. Its slots are the cluster's run slots
  (:func:`unlearn_core.raycluster.resource_request`). The driver thread waits on the task and drains its
  progress events from one :class:`~unlearn_core.raycluster.ProgressChannel` actor into the job; a cancel is
  posted to the channel (the task stops at its next step) and, if the task has not stopped
  ``CANCEL_GRACE_S`` seconds later, the task is cancelled with ``ray.cancel(force=True)``. A task whose worker
  died is retried once by Ray (``max_retries=1``); a second death fails the job with one line naming it. Only the
  driver records the outcome (:func:`unlearn_core.record.record_outcome`), once. Jobs other than runs (UMAP fits,
  sweeps from the app, a demo's preparation) are functions of the driver's own objects and run in the driver
  thread under either engine.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
from concurrent.futures import Future
from typing import Callable

from unlearn_core.errors import Cancelled, UnlearnError
from unlearn_core.progress import ProgressEvent

#: How long a cancelled Ray task may take to reach its next step before it is cancelled by force.
CANCEL_GRACE_S = 10.0
#: How often a driver thread looks at its task and drains its progress.
POLL_S = 0.2


class EngineError(UnlearnError):
    """The engine could not run a job (Ray missing, the cluster unreachable, the worker died twice)."""


# -- the queue -----------------------------------------------------------------------------------------------------
class Dispatcher:
    """At most ``slots`` calls at once, at most ``per_owner`` of one owner (0 or None: no limit), oldest first."""

    def __init__(self, slots: int = 1, per_owner: int | None = None, name: str = "unlearn-job"):
        self.slots = max(1, int(slots))
        self.per_owner = int(per_owner) if per_owner else None
        self._name = name
        self._cond = threading.Condition()
        self._queue: list[tuple[int, object, Future, Callable[[], None]]] = []
        self._running: dict[object, int] = {}
        self._threads: list[threading.Thread] = []
        self._order = itertools.count()
        self._closed = False

    def submit(self, owner, call: Callable[[], None]) -> Future:
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise EngineError("the job runner is shut down")
            self._queue.append((next(self._order), owner, future, call))
            if len(self._threads) < self.slots:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify_all()
        return future

    def _eligible(self):
        for item in self._queue:
            _, owner, future, _ = item
            if future.cancelled():
                continue
            if owner is None or self.per_owner is None or self._running.get(owner, 0) < self.per_owner:
                return item
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                self._queue = [item for item in self._queue if not item[2].cancelled()]
                item = self._eligible()
                while item is None and not self._closed:
                    self._cond.wait(1.0)
                    self._queue = [entry for entry in self._queue if not entry[2].cancelled()]
                    item = self._eligible()
                if item is None:
                    return
                self._queue.remove(item)
                _, owner, future, call = item
                if not future.set_running_or_notify_cancel():
                    continue
                self._running[owner] = self._running.get(owner, 0) + 1
            try:
                call()
                future.set_result(None)
            except BaseException as error:  # the call reports its own errors; keep the thread alive
                future.set_exception(error)
            finally:
                with self._cond:
                    self._running[owner] -= 1
                    if not self._running[owner]:
                        del self._running[owner]
                    self._cond.notify_all()

    def running(self) -> int:
        with self._cond:
            return sum(self._running.values())

    def shutdown(self, wait: bool = True) -> None:
        with self._cond:
            self._closed = True
            for _, _, future, _ in self._queue:
                future.cancel()
            self._queue.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()


# -- engines -------------------------------------------------------------------------------------------------------
class InlineEngine:
    """Every job in this process, one at a time (no Ray)."""

    name = "inline"
    remote_runs = False

    def slots(self) -> int:
        return 1

    def start(self) -> None:
        """Nothing to start."""

    def where(self, wait: bool = True) -> str:
        from unlearn_core.raycluster import where_runs_execute

        return where_runs_execute("inline")

    def close(self) -> None:
        pass


class RayEngine:
    """Runs as Ray tasks on a local instance on loopback (``address`` empty) or on the cluster at ``address``.

    Ray is imported and the session opened on first use (:meth:`session`), not when the app starts a page.
    """

    name = "ray"
    remote_runs = True

    def __init__(self, address: str = "", num_cpus: int | None = None, gpus_per_run: float = 0.0,
                 max_retries: int = 1):
        self.address = address or None
        self.num_cpus, self.gpus_per_run, self.max_retries = num_cpus, gpus_per_run, max_retries
        self._lock = threading.Lock()
        self._session = None
        self._request = None
        self._task = None
        self._channel = None
        self._keys = itertools.count(1)
        self._calls: dict = {}
        self._keeper: threading.Thread | None = None
        self._ready, self._stop = threading.Event(), threading.Event()
        self._error: str | None = None

    def start(self) -> None:
        """Open the session in the background (its thread); never raises (:meth:`session` reports a failure)."""
        with self._lock:
            if self._session is None and self._keeper is None:
                self._ready.clear()
                self._keeper = threading.Thread(target=self._keep, name="unlearn-ray-session", daemon=True)
                self._keeper.start()

    def session(self):
        """The Ray session (opened once; :class:`EngineError` with one line when Ray cannot start or join).

        It is opened, and closed, in a thread of its own that lives as long as the engine: Ray starts a local
        instance's GCS and raylet with a parent-death signal bound to the thread that starts them, so a
        short-lived thread (a page's script run, a warm-up) would take them down when it ends.
        """
        with self._lock:
            if self._session is None:
                if self._keeper is None:
                    self._ready.clear()
                    self._keeper = threading.Thread(target=self._keep, name="unlearn-ray-session", daemon=True)
                    self._keeper.start()
                keeper = self._keeper
            else:
                return self._session
        self._ready.wait()
        with self._lock:
            if self._session is None:
                error, self._keeper = self._error or "the Ray session closed", None
                if keeper is not None:
                    keeper.join(timeout=5)
                raise EngineError(error)
            return self._session

    def _keep(self) -> None:
        from unlearn_core import raycluster

        try:
            session = raycluster.connect(self.address, self.num_cpus)
            try:
                request = raycluster.resource_request(session.nodes(), self.gpus_per_run)
                import ray

                from unlearn_core.sweeps.single import run_task, warm_worker

                channel = ray.remote(raycluster.ProgressChannel).options(**channel_options(ray)).remote()
                task = ray.remote(run_task).options(num_cpus=request.num_cpus, num_gpus=request.num_gpus or 0,
                                                    max_retries=self.max_retries)
                # One warm-up per slot, not waited for: each worker imports torch and the methods before a run.
                warm = ray.remote(warm_worker).options(num_cpus=request.num_cpus, num_gpus=request.num_gpus or 0)
                for _ in range(request.slots):
                    warm.remote()
            except BaseException:
                session.close()
                raise
        except raycluster.RayClusterError as error:
            self._error = str(error)
            self._ready.set()
            return
        except Exception as error:
            self._error = f"cannot start the ray engine: {type(error).__name__}: {error}".splitlines()[0]
            self._ready.set()
            return
        with self._lock:
            self._session, self._request, self._channel, self._task = session, request, channel, task
        atexit.register(self.close)
        self._ready.set()
        self._stop.wait()
        with self._lock:
            self._session = self._channel = self._task = None
        session.close()

    def slots(self) -> int:
        self.session()
        return self._request.slots

    def where(self, wait: bool = True) -> str:
        """Setup's line (:func:`~unlearn_core.raycluster.where_runs_execute`); with ``wait=False`` a session still
        starting is named as such rather than waited for."""
        from unlearn_core.raycluster import where_runs_execute

        if not wait and self._keeper is not None and not self._ready.is_set():
            return ("a local Ray on 127.0.0.1" if self.address is None else f"the Ray cluster at {self.address}") + \
                " (starting)"
        return where_runs_execute("ray", self.session())

    def run(self, job, request: dict) -> dict:
        """Run ``request`` (:func:`~unlearn_core.sweeps.single.run_request`) as a task, feeding ``job``'s
        progress and passing its cancel on; returns the task's outcome dict, or raises :class:`Cancelled` or
        :class:`EngineError` (one line)."""
        self.session()
        request = {**request, "threads": request.get("threads") or int(self._request.num_cpus)}
        key = f"job-{next(self._keys)}"
        return self._await(job, key, self._task.remote(request, self._channel, key))

    def call(self, job, fn, **kwargs):
        """Run ``fn(**kwargs, threads=, channel=, key=)`` (a task function of ``unlearn_core.sweeps.single``)
        as a task with ``job``'s progress and cancel relayed, as :meth:`run` does; returns its value."""
        self.session()
        with self._lock:
            remote = self._calls.get(fn)
            if remote is None:
                import ray

                remote = self._calls[fn] = ray.remote(fn).options(
                    num_cpus=self._request.num_cpus, num_gpus=self._request.num_gpus or 0,
                    max_retries=self.max_retries)
        key = f"job-{next(self._keys)}"
        kwargs.setdefault("threads", int(self._request.num_cpus))
        return self._await(job, key, remote.remote(channel=self._channel, key=key, **kwargs))

    def _await(self, job, key: str, ref):
        import ray

        from unlearn_core.sweeps.engines import task_error

        cancelled_at = None
        try:
            while True:
                ready, _ = ray.wait([ref], num_returns=1, timeout=POLL_S)
                self._drain(job, key)
                if ready:
                    break
                if job.cancel_event.is_set():
                    now = time.monotonic()
                    if cancelled_at is None:
                        self._channel.cancel.remote(key)  # fire and forget; ray.cancel below if it is lost
                        cancelled_at = now
                    elif now - cancelled_at > CANCEL_GRACE_S:
                        ray.cancel(ref, force=True)
                        cancelled_at = float("inf")  # once
            try:
                out = ray.get(ref)
            except Exception as error:
                if job.cancel_event.is_set():
                    raise Cancelled("cancelled") from None
                raise EngineError(f"the Ray task stopped: {task_error(error)}") from None
            self._drain(job, key)
            return out
        finally:
            try:
                self._channel.forget.remote(key)
            except Exception:
                pass

    def _drain(self, job, key: str) -> None:
        """Move the task's progress events into ``job`` (best effort: the task's result is what counts, so a
        channel restarting after its node was lost only skips this look)."""
        import ray

        try:
            events = ray.get(self._channel.drain.remote(key), timeout=5)
        except Exception:
            return
        for event in events:
            job.on_progress(ProgressEvent(**event))

    def close(self) -> None:
        """Stop the Ray session this engine opened (in its own thread, which then ends)."""
        keeper = self._keeper
        if keeper is None:
            return
        self._stop.set()
        if keeper is not threading.current_thread():
            keeper.join(timeout=120)


#: The resource every Ray head node carries (Ray's own state actors ask for a sliver of it to live there).
HEAD_RESOURCE = "node:__internal_head__"


def channel_options(ray) -> dict:
    """The progress channel actor: no CPU, restarted by Ray should it be lost, and on the head node, whose loss
    ends the cluster anyway. Not the driver's node: a driver attaches to some raylet of its own host, which on a
    host with several nodes (or a driver on a worker host) may be a node that dies while the runs go on."""
    options = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
    try:
        head = any(node.get("Alive") and HEAD_RESOURCE in node.get("Resources", {}) for node in ray.nodes())
    except Exception:  # a Ray without the head resource: Ray places the actor
        head = False
    if head:
        options["resources"] = {HEAD_RESOURCE: 0.001}
    return options


def make_engine(settings=None):
    """The engine ``UNLEARN_ENGINE`` names (``inline`` or ``ray`` at ``UNLEARN_RAY_ADDRESS``)."""
    if settings is None:
        from unlearn_core.settings import settings as read

        settings = read()
    if settings.engine == "ray":
        return RayEngine(settings.ray_address)
    return InlineEngine()


# -- a run through a remote engine ---------------------------------------------------------------------------------
def run_remote(engine: RayEngine, job, request: dict, store=None):
    """One dashboard run on ``engine``, recorded here by the driver; returns ``(run_id, report, method_run)`` as
    :func:`unlearn_core.record.run_and_record` does (the method run's ``model`` holds the weights' state dict).

    As in :func:`run_and_record`: a failure before the setup is ready records nothing; a method's failure is
    recorded ``failed`` and a cancel during the method ``cancelled`` (both then raise).
    """
    from unlearn_core.pipeline import MethodRun
    from unlearn_core.record import fail_run, record_outcome
    from unlearn_core.store import RunStore
    from unlearn_core.sweeps.work import StateHolder

    store = store or RunStore()
    out = engine.run(job, request)
    config = out.get("config")
    if out.get("cancelled"):
        if config is not None:
            fail_run(store, store.start(config), Cancelled(out.get("error") or "cancelled"))
        raise Cancelled(out.get("error") or "cancelled")
    if out.get("error"):
        if config is not None:
            record_outcome(store, config, None, error=out["error"])
        raise EngineError(out["error"])
    holder = StateHolder(out["state"])
    run_id = record_outcome(store, config, out["report"], holder, outputs=out.get("outputs"))
    run = MethodRun(config["method"], out.get("params") or config["params"], holder, out["seconds"],
                    out.get("artifacts") or {}, out.get("timing") or {}, out.get("evidence") or {},
                    outputs=out.get("outputs"))
    return run_id, out["report"], run


def train_original_remote(engine: RayEngine, job, dataset: str, model: str, seed: int, device: str = "auto") -> str:
    """Train a choice's original model as a task on ``engine`` and put it in this process's checkpoint cache (a
    cluster node's disk is not the app's); returns its cache key. Raises :class:`Cancelled` or
    :class:`EngineError` (one line)."""
    from unlearn_core.checkpoints import CheckpointCache
    from unlearn_core.sweeps.single import train_original_task
    from unlearn_core.sweeps.work import StateHolder

    out = engine.call(job, train_original_task, dataset=dataset, model=model, seed=seed, device=device)
    if out.get("cancelled"):
        raise Cancelled(out.get("error") or "cancelled")
    if out.get("error"):
        raise EngineError(out["error"])
    cache = CheckpointCache()
    if not cache.path_for(out["key"]).exists():
        with cache.lock(out["key"]):
            if not cache.path_for(out["key"]).exists():
                cache.save(out["key"], StateHolder(out["state"]), out["meta"])
    return out["key"]
