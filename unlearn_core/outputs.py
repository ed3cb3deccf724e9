"""Files the CLI and scripts write on a user's request (reports, exports, tables).

Two rules:

- An output path is checked *before* any work starts (:func:`check_output_path`):
  a run that took minutes must not end in a traceback because ``--json`` names a
  folder, a read-only place or a path under a file, losing its report.
- No output may land on a file the library manages: the run store and its
  ``-wal``/``-shm``/``-journal`` files, the run checkpoints, the checkpoint
  cache, downloaded data sets, the image root (``runs export --csv <the store>``
  must not replace a database of runs with a CSV).

:func:`write_output_bytes` writes a regular file atomically (readers see the
old file or the whole new one) and turns an ``OSError`` (disk full, quota,
read-only file system) into one line. What is not a regular file is never
replaced: ``-`` is standard output; a character device (``/dev/stdout``,
``/dev/null``) or a FIFO is written in place; a symlink is followed and its
target written (the link stays); a block device or a socket is refused.
This module sits in the bottom layer: it knows where the store keeps its files
(:func:`unlearn_core.paths.checkpoint_dir_for`) without importing the store.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from pathlib import Path

from unlearn_core import paths
from unlearn_core.errors import OutputPathError
from unlearn_core.settings import settings

SQLITE_MAGIC = b"SQLite format 3\x00"
STORE_SIDE_FILES = ("", "-wal", "-shm", "-journal")
# Sub-folders of the data directory that only the library writes.
MANAGED_FOLDERS = ("checkpoints", "runs", "datasets", "imagefolders")
NAME_MAX = 255  # bytes per path component on every file system this runs on
STDOUT = "-"  # an output path that means standard output

_OS_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EIO: "input/output error",
    errno.ENXIO: "no process is reading it",
    errno.EPIPE: "the reader closed it",
}


def describe_os_error(error: OSError) -> str:
    """An ``OSError`` as a short lower-case reason, one line (``no space left on device``)."""
    reason = _OS_REASONS.get(getattr(error, "errno", None))
    if reason is None:
        reason = " ".join(str(getattr(error, "strerror", None) or error).split())[:200] or type(error).__name__
    return reason


def _shown(path) -> str:
    # repr keeps a path with a newline or an escape sequence on one harmless line.
    return repr(str(path))


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def managed_reason(target: Path, store_path: str | Path | None = None) -> str | None:
    """Why ``target`` (a resolved path) is a managed file, or None."""
    data = _real(paths.data_dir_location())
    stores = {_real(data / "runs.sqlite")}
    if store_path is not None:
        stores.add(_real(Path(store_path)))
    for store in stores:
        for suffix in STORE_SIDE_FILES:
            side = Path(str(store) + suffix)
            if target == side or (target.exists() and side.exists() and os.path.samefile(target, side)):
                return f"is the run store {_shown(store)}" + (f" (its {suffix[1:]} file)" if suffix else "")
        if _inside(target, _real(paths.checkpoint_dir_for(store))):
            return f"is inside the run store's checkpoint folder {_shown(paths.checkpoint_dir_for(store))}"
    if target.parent == data and target.name.endswith(tuple(".sqlite" + s for s in STORE_SIDE_FILES)):
        return f"is a run store file in the data directory {_shown(data)}"
    for name in MANAGED_FOLDERS:
        if _inside(target, data / name):
            return f"is inside the data directory's {name}/ folder, which the library manages"
    image_root = settings().image_root
    if _inside(target, _real(image_root)):
        return f"is inside the image root {_shown(image_root)} (UNLEARN_IMAGE_ROOT)"
    return None


def check_output_path(path, store_path: str | Path | None = None) -> Path:
    """Refuse an output path that cannot be written or names a managed file; returns it resolved.

    Checked: empty names, NUL bytes, over-long names, folders, paths under a file, read-only folders and
    files, the run store (``store_path`` and the default one) with its side files and checkpoints, the data
    directory's managed folders, the image root, and any existing SQLite database. The folders leading to the
    file may be missing (they are created when it is written), but the nearest existing one must be writable.
    """
    text = os.fspath(path) if isinstance(path, (str, Path)) else None
    if not text or not text.strip():
        raise OutputPathError("output path is empty")
    if "\x00" in text:
        raise OutputPathError(f"output path {_shown(text)} contains a NUL byte")
    if any(len(part.encode("utf-8", "surrogateescape")) > NAME_MAX for part in Path(text).parts):
        raise OutputPathError(f"output path {_shown(text[:80] + '...')} has a name longer than {NAME_MAX} bytes")
    if text == STDOUT:
        return Path(STDOUT)
    target = _real(Path(text))
    kind = _special_kind(text)
    if kind in ("a block device", "a socket", "a special file"):
        raise OutputPathError(f"refusing to write to {_shown(text)}: it is {kind}, not a file")
    if target.is_dir():
        raise OutputPathError(f"output path {_shown(text)} is a folder; give a file name")
    reason = managed_reason(target, store_path)
    if reason is not None:
        raise OutputPathError(f"refusing to write to {_shown(text)}: it {reason}")
    if kind is not None:  # a character device or a FIFO: written in place, never read here (a read can block)
        if not os.access(text, os.W_OK):
            raise OutputPathError(f"output {_shown(text)} ({kind}) is not writable")
        return target
    if target.exists():
        try:
            with open(target, "rb") as handle:
                head = handle.read(len(SQLITE_MAGIC))
        except OSError:
            head = b""
        if head == SQLITE_MAGIC:
            raise OutputPathError(f"refusing to write to {_shown(text)}: it is a SQLite database (a run store?)")
        if not os.access(target, os.W_OK):
            raise OutputPathError(f"output file {_shown(text)} is read-only")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputPathError(f"output path {_shown(text)} is under {_shown(folder)}, which is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {_shown(text)}: the folder {_shown(folder)} is read-only")
    return target


def check_output_paths(named: dict[str, str | None], store_path: str | Path | None = None) -> None:
    """:func:`check_output_path` for each ``{option: path}`` given (None skipped), and no file named twice.

    Errors start with the option (``--json: ...``) so the user knows which one to fix.
    """
    seen: dict[Path, str] = {}
    for option, path in named.items():
        if path is None:
            continue
        try:
            target = check_output_path(path, store_path)
        except OutputPathError as error:
            raise OutputPathError(f"{option}: {error}") from None
        if target in seen:
            raise OutputPathError(f"{seen[target]} and {option} name the same file {_shown(path)}")
        seen[target] = option


def _special_kind(path) -> str | None:
    """What ``path`` (symlinks followed) is when it exists and is not a regular file or a folder, else None.

    ``/dev/stdout`` and ``/dev/fd/N`` lead to an open file of this process (a ``/proc`` link): those count as
    ``"an open file"`` whatever they point at, so they are written in place and never replaced.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if str(_real(Path(path))).startswith("/proc/"):
        return "an open file"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _write_in_place(path, data: bytes, kind: str) -> None:
    """Write to a character device, a FIFO or an open file of this process as it is (no temporary file, no rename).

    Our own standard output goes through ``sys.stdout`` (so it keeps its order with what the CLI prints); a FIFO
    is opened without blocking, so a FIFO nobody reads fails at once (ENXIO) instead of hanging; an open file is
    appended to.
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stdout closed, or not a real file
        if os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno())):
            _write_stdout(data)
            return
    fifo = kind == "a FIFO"
    flags = os.O_WRONLY | (os.O_NONBLOCK if fifo else 0) | (os.O_APPEND if kind == "an open file" else 0)
    fd = os.open(path, flags)
    try:
        if fifo:
            os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _write_stdout(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def write_output_bytes(path, data: bytes, what: str = "output") -> None:
    """Write ``data`` to ``path``: standard output for ``-``, in place for a device or FIFO, else atomically.

    A regular file (or a new one) is replaced atomically, through a symlink to its target (the link stays).
    OS errors (``/dev/full``'s "no space left", a FIFO nobody reads) become one line.
    """
    from unlearn_core import checkpoints

    try:
        if os.fspath(path) == STDOUT:
            _write_stdout(data)
            return
        kind = _special_kind(path)
        if kind in ("a character device", "a FIFO", "an open file"):
            _write_in_place(path, data, kind)
        elif kind is not None:
            raise OutputPathError(f"refusing to write the {what} to {_shown(path)}: it is {kind}, not a file")
        else:
            checkpoints.atomic_write_bytes(_real(Path(path)), data)
    except OSError as error:
        raise OutputPathError(f"cannot write the {what} to {_shown(path)}: {describe_os_error(error)}") from None


def require_writable_data_dir() -> Path:
    """The data directory, refused in one line when it cannot hold checkpoints and the run store."""
    from unlearn_core.errors import StorageError

    folder = paths.data_dir()  # raises StorageError when it is a file or cannot be created
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"the data directory {_shown(folder)} is read-only; set UNLEARN_DATA_DIR to a "
                           "writable folder (listing runs works read-only)")
    for name in ("checkpoints", "runs"):
        sub = folder / name
        if sub.exists() and (not sub.is_dir() or not os.access(sub, os.W_OK | os.X_OK)):
            raise StorageError(f"the data directory's {name}/ folder {_shown(sub)} is not a writable folder")
    return folder
