"""Files the CLI and scripts write on a user's request (reports, exports, tables).

Two rules:

- An output path is checked *before* any work starts (:func:`check_output_path`):
  a run that took minutes must not end in a traceback because ``--json`` names a
  folder, a read-only place or a path under a file, losing its report.
- No output may land on a file the library manages: the run store and its
  ``-wal``/``-shm``/``-journal`` files, the run checkpoints, the checkpoint
  cache, downloaded data sets, the image root (``runs export --csv <the store>``
  must not replace a database of runs with a CSV).

:func:`write_output_bytes` writes atomically and turns an ``OSError`` (disk
full, quota, read-only file system) into one line. This module sits in the
bottom layer: it knows where the store keeps its files
(:func:`unlearn_core.paths.checkpoint_dir_for`) without importing the store.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from unlearn_core import paths
from unlearn_core.errors import OutputPathError
from unlearn_core.settings import settings

SQLITE_MAGIC = b"SQLite format 3\x00"
STORE_SIDE_FILES = ("", "-wal", "-shm", "-journal")
# Sub-folders of the data directory that only the library writes.
MANAGED_FOLDERS = ("checkpoints", "runs", "datasets", "imagefolders")
NAME_MAX = 255  # bytes per path component on every file system this runs on

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
    target = _real(Path(text))
    if target.is_dir():
        raise OutputPathError(f"output path {_shown(text)} is a folder; give a file name")
    reason = managed_reason(target, store_path)
    if reason is not None:
        raise OutputPathError(f"refusing to write to {_shown(text)}: it {reason}")
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


def write_output_bytes(path, data: bytes, what: str = "output") -> None:
    """Write ``data`` atomically (readers see the old file or the whole new one); OS errors become one line."""
    from unlearn_core import checkpoints

    try:
        checkpoints.atomic_write_bytes(Path(path), data)
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
