"""Where tasks run: :class:`InlineEngine` (one after another in this process) and :class:`RayEngine` (Ray tasks,
imported only when a Ray sweep starts).
"""

from __future__ import annotations

import threading

from unlearn_core.errors import Cancelled
from unlearn_core.progress import ProgressFn
from unlearn_core.sweeps.spec import SweepError
from unlearn_core.sweeps.work import execute_run


# -- engines -------------------------------------------------------------------------------------------------------
class _Thunk:
    """A call the inline engine runs when someone waits for it (arguments that are thunks run first)."""

    def __init__(self, fn, args, kwargs, parts: int):
        self.fn, self.args, self.kwargs, self.parts = fn, args, kwargs, parts
        self.done, self.value, self.error = False, None, None

    def run(self):
        if not self.done:
            try:
                args = [a.get() if isinstance(a, _Ref) else a for a in self.args]
                self.value = self.fn(*args, **self.kwargs)
            except Cancelled:
                raise
            except Exception as error:
                self.error = error
            self.done = True
            self.fn = self.args = None  # free the inputs once used
        if self.error is not None:
            raise self.error
        return self.value


class _Ref:
    def __init__(self, thunk: _Thunk, index: int | None):
        self.thunk, self.index = thunk, index

    def get(self):
        value = self.thunk.run()
        return value if self.index is None else value[self.index]


class InlineEngine:
    """Runs every task in this process, in submission order, when it is waited for."""

    name = "inline"

    def __init__(self, device: str, progress: ProgressFn | None = None, cancel: threading.Event | None = None):
        self.device, self.progress, self.cancel_event = device, progress, cancel
        self.slots = 1

    def submit(self, fn, args, num_returns: int = 1, kind: str = "run"):
        kwargs = {"progress": self.progress, "cancel": self.cancel_event} if fn is execute_run else {}
        thunk = _Thunk(fn, args, kwargs, num_returns)
        if num_returns == 1:
            return _Ref(thunk, None)
        return [_Ref(thunk, i) for i in range(num_returns)]

    def wait(self, refs: list, timeout: float):
        if not refs:
            return [], []
        first = refs[0]
        try:
            first.thunk.run()
        except Cancelled:
            raise
        except Exception:
            pass  # surfaces from get()
        return [first], refs[1:]

    def get(self, ref):
        return ref.get()

    def cancel(self, refs) -> None:
        """Nothing is in flight between two waits."""

    def close(self) -> None:
        pass


class RayEngine:
    """Tasks on Ray, in the session :func:`unlearn_core.raycluster.connect` opens: a local instance bound to
    loopback (``address=None``, ``num_cpus`` slots) or the cluster at ``address``; each run task asks for
    :func:`unlearn_core.raycluster.resource_request`'s CPUs and GPUs, and ``slots`` is how many fit at once."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, gpus_per_run: float = 0.0):
        try:
            import ray
        except ImportError:
            raise SweepError("the ray engine needs the ray package (pip install -r requirements.txt); "
                             "or use --engine inline") from None
        from unlearn_core import raycluster

        self.ray = ray
        self.session = raycluster.connect(address, num_cpus)
        try:
            request = raycluster.resource_request(self.session.nodes(), gpus_per_run)
        except raycluster.RayClusterError:
            self.close()
            raise
        self.gpus_per_run = request.num_gpus
        self.slots = request.slots
        self._remote = {}

    @property
    def owned(self) -> bool:
        """Whether closing this engine shuts Ray down (it started or joined it, rather than found it running)."""
        return self.session.owned

    def _fn(self, fn, num_returns: int):
        key = (fn, num_returns)
        if key not in self._remote:
            # max_retries: a worker killed mid-task (OOM killer, a lost node) is retried; a method's own error
            # comes back as a value and is never retried.
            self._remote[key] = self.ray.remote(fn).options(num_cpus=1, num_gpus=self.gpus_per_run or 0,
                                                            max_retries=3, num_returns=num_returns)
        return self._remote[key]

    def submit(self, fn, args, num_returns: int = 1, kind: str = "run"):
        return self._fn(fn, num_returns).remote(*args)

    def wait(self, refs: list, timeout: float):
        return self.ray.wait(refs, num_returns=1, timeout=timeout)

    def get(self, ref):
        return self.ray.get(ref)

    def cancel(self, refs) -> None:
        for ref in refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass  # already finished or gone

    def close(self) -> None:
        self.session.close()


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def task_error(error: BaseException) -> str:
    """One line for a task that raised (Ray wraps the cause; the inline engine does not)."""
    from unlearn_core.jsonsafe import error_text

    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return error_text(cause)
    name = type(error).__name__
    if name in ("WorkerCrashedError", "TaskCancelledError", "ObjectLostError", "OwnerDiedError",
                "NodeDiedError"):
        return f"{name}: {first_line(error)}"
    return error_text(error)
