"""Every Ray session this project starts or joins: where it listens, how long joining may take, what it leaves.

:func:`connect` returns a :class:`RaySession`: a *local instance* started in
this process (``address=None``) or a *cluster* joined at ``address``
(``"HOST:PORT"`` of a GCS, ``"ray://HOST:PORT"`` of a Ray Client server, or
``"auto"``). ``RaySession.close()`` (or leaving its ``with`` block) shuts down
what the session started and only that; a session that found Ray already
initialised in this process shares it and leaves it running.

Loopback. Ray 2.60 rewrites a loopback bootstrap address (``127.0.0.1``,
``localhost``, ``::1``) into the machine's interface address
(``ray._private.services.resolve_ip_for_localhost``), so a driver told to join
``127.0.0.1:PORT`` dials ``<interface>:PORT`` and, when the nodes listen on
loopback only, retries "Failed to connect to GCS" without end; and a local
instance takes the interface address as its node address
(``get_node_ip_address``), so its GCS, raylet, workers and runtime-env agent
listen beyond loopback. Both functions return the loopback address when the
constant ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` is false, which
Ray reads from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when ``ray`` is
imported. :func:`connect` therefore sets that variable to ``0`` (and the
constant, if ``ray`` was imported already) for a local instance and for a
loopback address, and restores both for any other address. The variable also
reaches the raylet's workers, which inherit the driver's environment. With it
set, ``ray start --address ...`` refuses to add a node ("Multi-node Ray
clusters are not supported on Windows and OSX"); a multi-node cluster on
loopback is started with ``ray.cluster_utils.Cluster`` and
``add_node(node_ip_address="127.0.0.1")`` instead (the tests do).

Bounded joining. ``ray.init(address=...)`` has no timeout: against an address
where nothing answers as a GCS it retries for minutes. :func:`connect` first
opens a TCP connection to the address's port (``probe_seconds``, 5 s), which
settles a refused port, an unroutable host or a name that does not resolve at
once; a port that accepts but does not answer as Ray is bounded by running
``ray.init`` in a daemon thread and giving up after the rest of ``timeout``
(30 s). Either way :class:`RayClusterError` carries one line naming the address.

A local instance keeps its files under a private folder (mode 0700, owned by
this user): ``<data dir>/ray``, or ``$TMPDIR/unlearn-ray-<uid>`` when that path
is too long for Ray's socket names or lies inside the source tree. Ray makes
its own temp and session folders world-writable (``try_make_directory_shared``);
they live in the ``s`` sub-folder of that private one, so no other user can
reach them. Its token file (Ray 2.60 turns token authentication on for a new
local instance) is written there too, never to ``~/.ray``. No usage statistics
are sent. ``close()`` calls ``ray.shutdown()`` and then stops every process of
the session that is still alive: the processes Ray lists for the node and all
their descendants, recorded while the session ran, each matched by pid and
start time. A driver killed before it could close leaves the raylet's
dashboard and runtime-env agents running for up to a minute; the session
records its processes in its folder and the next local instance stops those of
sessions whose driver is gone (:func:`reap_stale`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from unlearn_core.errors import UnlearnError

#: Ray reads it at import; "0" makes ``get_node_ip_address`` answer the loopback address (see the module text).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Longest wait for joining a cluster, probe included.
CONNECT_TIMEOUT_S = 30.0
#: Longest wait for the TCP connection to the address's port.
PROBE_TIMEOUT_S = 5.0
#: Ray's socket paths must stay under 107 bytes; its session folder adds about 70 characters to its temp dir,
#: which is the private folder plus "/s".
MAX_PRIVATE_DIR = 34
#: What a task reports as its node when it runs in this process (the inline engine).
LOCAL_NODE = "local"

_ORIGINAL_ENV: dict[str, str | None] = {}
_current: "RaySession | None" = None
_lock = threading.Lock()


class RayClusterError(UnlearnError):
    """Ray cannot be started or the cluster at an address cannot be joined."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- addresses -----------------------------------------------------------------------------------------------------
def split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``"HOST:PORT"``, ``"ray://HOST:PORT"`` or ``"[V6]:PORT"``; None for ``"auto"``.

    Raises :class:`RayClusterError` for text that is neither.
    """
    text = address.strip()
    if text == "auto":
        return None
    if text.startswith("ray://"):
        text = text[len("ray://"):]
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RayClusterError(f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and every address of 127.0.0.0/8 or ``::1``."""
    host = host.strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def set_loopback_mode(on: bool) -> None:
    """Make Ray's node address the loopback one (``on``) or leave Ray's default (see the module text)."""
    if LOOPBACK_ENV not in _ORIGINAL_ENV:
        _ORIGINAL_ENV[LOOPBACK_ENV] = os.environ.get(LOOPBACK_ENV)
    if on:
        os.environ[LOOPBACK_ENV] = "0"
    elif _ORIGINAL_ENV[LOOPBACK_ENV] is None:
        os.environ.pop(LOOPBACK_ENV, None)
    else:
        os.environ[LOOPBACK_ENV] = _ORIGINAL_ENV[LOOPBACK_ENV]
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # imported before: the constant was read already, so set it as the variable says
        value = os.environ.get(LOOPBACK_ENV)
        default = not (sys.platform == "darwin" or sys.platform == "win32")
        constants.ENABLE_RAY_CLUSTER = default if value is None else value.lower() in ("1", "true")


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Open and close one TCP connection to ``host:port``; :class:`RayClusterError` when none opens in time."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.timeout:
        reason = f"no answer within {timeout:g} s"
    except OSError as error:
        reason = error.strerror or _first_line(error)
    raise RayClusterError(f"cannot reach the Ray cluster at {host}:{port}: {reason}")


def check_address(address: str, probe_seconds: float = PROBE_TIMEOUT_S) -> None:
    """Fail early, before any work, for an address that is malformed or where no TCP connection opens.

    ``"auto"`` is not probed (Ray finds the address itself, within :func:`connect`'s bound).
    """
    hostport = split_address(address)
    if hostport is not None:
        probe(hostport[0], hostport[1], probe_seconds)


# -- the private folder --------------------------------------------------------------------------------------------
def private_dir() -> Path:
    """The private folder a local instance keeps its files in (created with mode 0700, checked to be ours)."""
    from unlearn_core import paths

    preferred = (paths.data_dir() / "ray").resolve()
    source_tree = Path(__file__).resolve().parents[1]
    # Never inside the source tree, even where a data directory lives there (the tests' default, git-ignored).
    if len(str(preferred)) <= MAX_PRIVATE_DIR and source_tree not in preferred.parents:
        path = preferred
    else:
        path = Path(tempfile.gettempdir()) / f"unlearn-ray-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
        if info.st_uid != os.getuid():
            raise RayClusterError(f"the Ray folder {str(path)!r} belongs to another user; remove it or set "
                                  "UNLEARN_DATA_DIR")
        if info.st_mode & 0o077:
            path.chmod(0o700)
    except OSError as error:
        raise RayClusterError(f"cannot make the Ray folder {str(path)!r}: {error.strerror or error}") from None
    return path


def ray_temp_dir() -> str:
    """The temp folder handed to Ray (``_temp_dir``): ``s`` inside :func:`private_dir`."""
    return str(private_dir() / "s")


def _local_auth_token(folder: Path) -> None:
    """Point Ray at a token file in ``folder`` (mode 0600) unless the user chose a token or a mode."""
    if any(os.environ.get(name) for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")):
        return
    import secrets

    path = folder / "auth_token"
    if not path.exists() or not path.read_text().strip():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)


# -- processes -----------------------------------------------------------------------------------------------------
def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rpartition(")")[2].split()[19])


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(text.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry))
    return children


def descendants(roots: list[int]) -> set[int]:
    """``roots`` and every process below them (Linux /proc; empty elsewhere)."""
    if not os.path.isdir("/proc"):
        return set()
    children = _children_map()
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _alive(pid: int, started: int | None) -> bool:
    return started is not None and _start_time(pid) == started


def stop_processes(processes: dict[int, int | None], grace: float = 5.0) -> list[int]:
    """SIGTERM each (pid, start time) still alive, SIGKILL what remains after ``grace`` s; the pids stopped."""
    alive = [pid for pid, started in processes.items() if _alive(pid, started)]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid, processes[pid]) for pid in alive):
        time.sleep(0.1)
    for pid in alive:
        if _alive(pid, processes[pid]):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return alive


PID_FILE = "unlearn_pids.json"


def _write_pid_file(session_dir: Path, processes: dict[int, int | None]) -> None:
    record = {"driver": [os.getpid(), _start_time(os.getpid())],
              "processes": [[pid, started] for pid, started in processes.items()]}
    try:
        temporary = session_dir / (PID_FILE + ".tmp")
        temporary.write_text(json.dumps(record))
        temporary.replace(session_dir / PID_FILE)
    except OSError:
        pass  # a record for the next start to clean up after a killed driver; the session runs without it


def reap_stale(folder: Path | None = None) -> list[int]:
    """Stop the processes of local instances whose driver is gone (killed before it could close); the pids.

    A driver killed with SIGKILL leaves its raylet's dashboard and runtime-env agents running for up to a minute
    (measured with Ray 2.60); the GCS, the raylet and the workers exit with it. Each session folder under
    ``folder`` (default: :func:`ray_temp_dir`) holds the pids its driver recorded.
    """
    root = Path(folder) if folder is not None else Path(ray_temp_dir())
    stopped: list[int] = []
    for path in root.glob(f"session_*/{PID_FILE}"):
        try:
            record = json.loads(path.read_text())
            driver, driver_started = record["driver"]
            processes = {int(pid): started for pid, started in record["processes"]}
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(int(driver), driver_started):
            continue  # a session still running, in this process or another
        stopped += stop_processes(processes)
        try:
            path.unlink()
        except OSError:
            pass
    return stopped


# -- sessions ------------------------------------------------------------------------------------------------------
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


def _start_local(ray, num_cpus: int | None) -> RaySession:
    package_dir = Path(__file__).resolve().parent
    # Workers are spawned by this process's raylet and inherit its environment: the package's parent on
    # PYTHONPATH lets them import unlearn_core from a checkout that is not installed.
    parent = str(package_dir.parent)
    current_path = os.environ.get("PYTHONPATH", "")
    if parent not in current_path.split(os.pathsep):
        os.environ["PYTHONPATH"] = parent + (os.pathsep + current_path if current_path else "")
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
        runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)]}
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


# -- inside a task -------------------------------------------------------------------------------------------------
def node_id() -> str:
    """Ray's id of the node this code runs on, in a Ray worker; ``"local"`` in any other process."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return LOCAL_NODE
    try:
        context = ray.get_runtime_context()
        if context.worker.mode != ray.WORKER_MODE:
            return LOCAL_NODE  # the driver: the inline engine runs here
        return context.get_node_id()
    except Exception:
        return LOCAL_NODE


class ProgressChannel:
    """Progress events and cancel flags by task key: the body of the small Ray actor through which a driver
    hears a task's progress and tells it to stop (here, away from torch, so the actor's process stays small;
    ``unlearn_core.sweeps.single`` has the task's side)."""

    def __init__(self):
        self._events: dict[str, list[dict]] = {}
        self._cancelled: set[str] = set()

    def post(self, key: str, event: dict) -> None:
        self._events.setdefault(key, []).append(event)

    def drain(self, key: str) -> list[dict]:
        return self._events.pop(key, [])

    def cancel(self, key: str) -> None:
        self._cancelled.add(key)

    def cancelled(self, key: str) -> bool:
        return key in self._cancelled

    def forget(self, key: str) -> None:
        self._events.pop(key, None)
        self._cancelled.discard(key)


# -- resources -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResourceRequest:
    """What each run task asks of Ray, and how many such tasks the cluster can run at once."""

    num_cpus: float
    num_gpus: float
    slots: int


def resource_request(nodes: list[dict], gpus_per_run: float = 0.0, cpus_per_run: float = 1.0) -> ResourceRequest:
    """The request for ``gpus_per_run`` GPUs per run, given each alive node's resources (``{"CPU": .., "GPU": ..}``).

    A task runs on one node, so slots are counted per node: ``min(floor(CPU / cpus_per_run),
    floor(GPU / gpus_per_run))`` (the GPU term only when GPUs are asked), summed over nodes. Ray accepts a
    fraction of a GPU below 1 and whole GPUs above; anything else, or GPUs asked of a cluster where no node can
    give them, raises :class:`RayClusterError`.
    """
    gpus = float(gpus_per_run or 0.0)
    if not math.isfinite(gpus) or gpus < 0:
        raise RayClusterError(f"--gpus-per-run must be 0 or more, got {gpus_per_run!r}")
    if gpus > 1 and not gpus.is_integer():
        raise RayClusterError(f"--gpus-per-run above 1 must be a whole number of GPUs, got {gpus_per_run!r}")
    eps = 1e-9  # 1.0 / 0.1 is 9.999999999999998 in floating point
    slots = 0
    for node in nodes:
        resources = node.get("resources", node)
        node_slots = math.floor(float(resources.get("CPU", 0)) / cpus_per_run + eps)
        if gpus > 0:
            node_slots = min(node_slots, math.floor(float(resources.get("GPU", 0)) / gpus + eps))
        slots += max(0, node_slots)
    if gpus > 0 and slots == 0:
        have = sum(float(node.get("resources", node).get("GPU", 0)) for node in nodes)
        if have <= 0:
            raise RayClusterError("--gpus-per-run asks for GPUs but the Ray cluster has none")
        raise RayClusterError(f"--gpus-per-run {gpus:g}: no node of the Ray cluster has that many GPUs")
    return ResourceRequest(num_cpus=cpus_per_run, num_gpus=gpus, slots=max(1, slots))


def where_runs_execute(engine: str, session: RaySession | None = None) -> str:
    """The Setup page's line: ``"this process"`` inline, else the Ray session's :meth:`RaySession.describe`."""
    if engine == "inline" or session is None:
        return "this process"
    return session.describe()
