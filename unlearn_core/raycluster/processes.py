"""What a local Ray instance leaves on this machine: its private folder (mode 0700, short enough for Ray's socket
names) and its processes, recorded by pid and start time so that ``close()`` and the next local start
(:func:`reap_stale`) stop every one of them."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

from unlearn_core.raycluster.addresses import RayClusterError

#: Ray's socket paths must stay under 107 bytes; its session folder adds about 70 characters to its temp dir,
#: which is the private folder plus "/s".
MAX_PRIVATE_DIR = 34


def private_dir() -> Path:
    """The private folder a local instance keeps its files in (created with mode 0700, checked to be ours)."""
    from unlearn_core import paths

    preferred = (paths.data_dir() / "ray").resolve()
    source_tree = Path(__file__).resolve().parents[2]  # the checkout that holds unlearn_core
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
