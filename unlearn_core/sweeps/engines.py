"""Where tasks run: :class:`InlineEngine` (one after another in this process) and :class:`RayEngine` (Ray tasks,
imported only when a Ray sweep starts).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from unlearn_core.errors import Cancelled
from unlearn_core.progress import ProgressFn
from unlearn_core.sweeps.spec import SweepError
from unlearn_core.sweeps.work import execute_run


#: Ray's socket paths must stay under 107 bytes; its session folder adds about 70 characters to the temp dir.
MAX_RAY_TEMP_DIR = 36


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


def ray_temp_dir() -> str:
    """Where a local Ray instance keeps its session files: the data directory, or the system temp."""
    from unlearn_core import paths

    preferred = (paths.data_dir() / "ray").resolve()
    source_tree = Path(__file__).resolve().parents[2]
    # Never inside the source tree, even where a data directory lives there (the tests' default, git-ignored).
    if len(str(preferred)) <= MAX_RAY_TEMP_DIR and source_tree not in preferred.parents:
        return str(preferred)
    return os.path.join(tempfile.gettempdir(), f"unlearn-ray-{os.getuid()}")


def _local_auth_token(temp_dir: str) -> None:
    """Give a local Ray instance its token file beside its temp files, not in ``~/.ray``.

    Ray 2.60 turns token authentication on for a new local instance and would
    write the token to ``~/.ray/auth_token``; a token the user set
    (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``RAY_AUTH_MODE``) is left alone.
    """
    if any(os.environ.get(name) for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")):
        return
    import secrets

    path = Path(temp_dir) / "auth_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or not path.read_text().strip():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)


class RayEngine:
    """Tasks on Ray: an embedded local instance, or an existing cluster at ``address``."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, gpus_per_run: float = 0.0):
        try:
            import ray
        except ImportError:
            raise SweepError("the ray engine needs the ray package (pip install -r requirements.txt); "
                             "or use --engine inline") from None
        self.ray = ray
        self.gpus_per_run = float(gpus_per_run or 0.0)
        self.owned = False
        # No usage report leaves the machine (and none is attempted offline).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        package_dir = str(Path(__file__).resolve().parents[1])  # unlearn_core, shipped to a cluster whole
        if ray.is_initialized():
            pass  # someone in this process (the app, a test) already runs Ray: share it, leave it running
        elif address:
            try:
                # The package travels with the job: cluster nodes need not have this checkout.
                ray.init(address=address, runtime_env={"py_modules": [package_dir]}, log_to_driver=False,
                         logging_level="ERROR")
            except Exception as error:
                raise SweepError(f"cannot join the Ray cluster at {address!r}: {first_line(error)}") from None
            self.owned = True
        else:
            # Workers are spawned by this process's raylet and inherit its environment: the package's parent
            # on PYTHONPATH lets them import unlearn_core from a checkout that is not installed.
            parent = str(Path(package_dir).parent)
            current = os.environ.get("PYTHONPATH", "")
            if parent not in current.split(os.pathsep):
                os.environ["PYTHONPATH"] = parent + (os.pathsep + current if current else "")
            cpus = int(num_cpus or os.cpu_count() or 1)
            temp_dir = ray_temp_dir()
            _local_auth_token(temp_dir)
            try:
                ray.init(num_cpus=cpus, _temp_dir=temp_dir, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", configure_logging=True)
            except Exception as error:
                raise SweepError(f"cannot start a local Ray instance: {first_line(error)}") from None
            self.owned = True
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 1))
        if self.gpus_per_run > 0:
            gpus = float(resources.get("GPU", 0))
            if gpus <= 0:
                self.close()
                raise SweepError("--gpus-per-run asks for GPUs but the Ray cluster has none")
            self.slots = max(1, min(cpus, int(gpus / self.gpus_per_run)))
        else:
            self.slots = max(1, cpus)
        self._remote = {}

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
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        self.owned = False


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
