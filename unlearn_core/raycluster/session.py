"""A Ray session: :func:`connect` starts a local instance on loopback or joins a cluster within a bound; the
:class:`RaySession` it returns closes what it started and only that (see :mod:`unlearn_core.raycluster`)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from unlearn_core.raycluster.addresses import (PROBE_TIMEOUT_S, RayClusterError, _first_line, is_loopback, probe,
                                             set_loopback_mode, split_address)
from unlearn_core.raycluster.processes import (PID_FILE, _alive, _local_auth_token, _start_time, _write_pid_file,
                                             descendants, private_dir, reap_stale, stop_processes)

#: Longest wait for joining a cluster, probe included.
CONNECT_TIMEOUT_S = 30.0

_current: "RaySession | None" = None
_lock = threading.Lock()


@dataclass
class RaySession:
    """One Ray session of this process: a local instance, a joined cluster, or one found already running.

    ``owned``: this session started or joined Ray and shuts it down on :meth:`close`.
    """

    address: str | None
    owned: bool
    local: bool
    session_dir: str | None = None
    _processes: dict[int, int | None] = field(default_factory=dict, repr=False)

    def __enter__(self) -> "RaySession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _root_pids(self) -> list[int]:
        import ray

        node = getattr(ray._private.worker, "_global_node", None)
        if node is None:
            return []
        return [info.process.pid for infos in node.all_processes.values() for info in infos
                if getattr(info, "process", None) is not None]

    def remember_processes(self) -> dict[int, int | None]:
        """Record the session's processes (the node's and all below them) so :meth:`close` can stop them.

        They are also written to ``unlearn_pids.json`` in the session folder, with this driver's pid and start
        time, so that the next local instance can stop what a killed driver left (:func:`reap_stale`).
        """
        if self.local and self.owned:
            before = len(self._processes)
            for pid in descendants(self._root_pids()):
                if pid != os.getpid() and pid not in self._processes:
                    self._processes[pid] = _start_time(pid)
            if self.session_dir and len(self._processes) != before:
                _write_pid_file(Path(self.session_dir), self._processes)
        return dict(self._processes)

    def pids(self) -> list[int]:
        """The session's processes alive now (a local instance's; empty for a joined cluster)."""
        self.remember_processes()
        return sorted(pid for pid, started in self._processes.items() if _alive(pid, started))

    def resources(self) -> dict:
        import ray

        return ray.cluster_resources()

    def nodes(self) -> list[dict]:
        """The alive nodes: ``{"node_id", "address", "resources"}`` each."""
        import ray

        return [{"node_id": node["NodeID"], "address": node.get("NodeManagerAddress"),
                 "resources": dict(node.get("Resources") or {})}
                for node in ray.nodes() if node.get("Alive")]

    def describe(self) -> str:
        """Where runs execute, in words: a local instance's worker slots, or the cluster's nodes and GPUs."""
        resources = self.resources()
        cpus = int(resources.get("CPU", 0))
        gpus = resources.get("GPU", 0)
        gpu_text = f"{gpus:g} GPU" + ("" if gpus == 1 else "s")
        if self.local:
            text = f"local Ray with {cpus} worker" + ("" if cpus == 1 else "s")
            return text + (f" and {gpu_text}" if gpus else "")
        count = len(self.nodes())
        where = self.address or "auto"
        return f"cluster at {where}: {count} node" + ("" if count == 1 else "s") + f", {cpus} CPUs, {gpu_text}"

    def close(self) -> None:
        """Shut down what this session started (nothing for a shared one); stop its processes still alive."""
        global _current
        if not self.owned:
            return
        import ray

        self.remember_processes()
        try:
            if ray.is_initialized():
                ray.shutdown()
        finally:
            self.owned = False
            stop_processes(self._processes)
            if self.session_dir:
                try:
                    (Path(self.session_dir) / PID_FILE).unlink()
                except OSError:
                    pass
            with _lock:
                if _current is self:
                    _current = None


def current() -> RaySession | None:
    """The session :func:`connect` started or joined last, while it is open (shared views are not counted)."""
    return _current


def connect(address: str | None = None, num_cpus: int | None = None, *, timeout: float = CONNECT_TIMEOUT_S,
            probe_seconds: float = PROBE_TIMEOUT_S, runtime_env: dict | None = None) -> RaySession:
    """Start a local instance (``address=None``, ``num_cpus`` worker slots) or join the cluster at ``address``.

    Joining sends this package with the job (``runtime_env={"py_modules": [unlearn_core]}`` unless
    ``runtime_env`` is given), so nodes need the same third-party packages, not this checkout. Raises
    :class:`RayClusterError` (one line naming the address) when the cluster cannot be joined within ``timeout``.
    """
    global _current
    if address is not None and not address.strip():
        address = None
    hostport = split_address(address) if address else None
    try:
        set_loopback_mode(address is None or (hostport is not None and is_loopback(hostport[0])))
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
        import ray
    except ImportError:
        raise RayClusterError("Ray is not installed (pip install -r requirements.txt)") from None
    with _lock:
        if ray.is_initialized():
            # Someone in this process (the app, a test, a session still open) runs Ray: share it and leave it
            # running; closing the shared view stops nothing (its opener closes it).
            if _current is not None and _current.owned:
                return RaySession(address=_current.address, owned=False, local=_current.local,
                                  session_dir=_current.session_dir)
            return RaySession(address=address, owned=False, local=address is None)
        if address is None:
            session = _start_local(ray, num_cpus)
        else:
            session = _join(ray, address, hostport, timeout, probe_seconds, runtime_env)
        _current = session
        return session


def export_package_parent() -> str:
    """Put the folder that holds the ``unlearn_core`` package first on this process's ``PYTHONPATH`` (once) and
    return it. A local instance's workers are spawned by this process's raylet and inherit its environment, so
    they import ``unlearn_core`` from a checkout that is not installed."""
    parent = str(Path(__file__).resolve().parents[2])  # unlearn_core/raycluster/session.py -> the checkout
    current_path = os.environ.get("PYTHONPATH", "")
    if parent not in current_path.split(os.pathsep):
        os.environ["PYTHONPATH"] = parent + (os.pathsep + current_path if current_path else "")
    return parent


def _start_local(ray, num_cpus: int | None) -> RaySession:
    export_package_parent()
    folder = private_dir()
    reap_stale(folder / "s")
    _local_auth_token(folder)
    cpus = int(num_cpus or os.cpu_count() or 1)
    try:
        ray.init(num_cpus=cpus, _temp_dir=str(folder / "s"), include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
    except Exception as error:
        raise RayClusterError(f"cannot start a local Ray instance: {_first_line(error)}") from None
    node = ray._private.worker._global_node
    session = RaySession(address=None, owned=True, local=True,
                         session_dir=node.get_session_dir_path() if node is not None else None)
    session.remember_processes()
    return session


def _join(ray, address: str, hostport: tuple[str, int] | None, timeout: float, probe_seconds: float,
          runtime_env: dict | None) -> RaySession:
    started = time.monotonic()
    if hostport is not None:
        probe(hostport[0], hostport[1], min(probe_seconds, timeout))
    if runtime_env is None:
        runtime_env = {"py_modules": [str(Path(__file__).resolve().parents[1])]}  # the unlearn_core package
    outcome: dict = {}

    def init() -> None:
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, logging_level="ERROR")
            outcome["ok"] = True
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    # ray.init has no timeout of its own; a daemon thread lets this call return when it does not finish.
    thread = threading.Thread(target=init, name="ray-connect", daemon=True)
    thread.start()
    thread.join(max(0.0, timeout - (time.monotonic() - started)))
    if thread.is_alive():
        raise RayClusterError(f"cannot join the Ray cluster at {address}: no Ray answer within {timeout:g} s")
    if "error" in outcome:
        raise RayClusterError(f"cannot join the Ray cluster at {address}: {_first_line(outcome['error'])}")
    return RaySession(address=address, owned=True, local=False)


def close() -> None:
    """Close the session :func:`connect` opened last, if any."""
    session = _current
    if session is not None:
        session.close()
