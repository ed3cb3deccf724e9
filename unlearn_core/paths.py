"""Where the library keeps its files: data sets, checkpoints, the run store.

The data directory is ``settings().data_dir`` (``UNLEARN_DATA_DIR``, by
default ``~/.cache/unlearning-lab``); ``imagefolder:`` paths must stay inside
``settings().image_root`` (``UNLEARN_IMAGE_ROOT``).
"""

from __future__ import annotations

from pathlib import Path

from unlearn_core.errors import StorageError
from unlearn_core.settings import settings


def data_dir_location() -> Path:
    """Where the data directory is, without creating it (for checks that must not touch the disk)."""
    return settings().data_dir


def data_dir() -> Path:
    """The root directory for downloads, checkpoints and the run store."""
    path = data_dir_location()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as error:
        # A file in the way, a read-only parent, a NUL byte: one line naming the setting, not a traceback.
        reason = getattr(error, "strerror", None) or str(error)
        try:
            if path.exists() and not path.is_dir():
                reason = "it is a file, not a folder"
        except (OSError, ValueError):  # a NUL byte makes even exists() raise
            pass
        raise StorageError(f"the data directory {str(path)!r} cannot be used: {reason}; set UNLEARN_DATA_DIR to a "
                           "writable folder") from None
    return path


def downloads_dir() -> Path:
    path = data_dir() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir() -> Path:
    path = data_dir() / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_dir_for(store_path: str | Path) -> Path:
    """The folder a run store keeps its runs' checkpoints in: ``runs/`` beside ``runs.sqlite``.

    Any other store file name gets its own ``<stem>-runs/`` folder: two stores in one folder (say
    ``alone.sqlite`` and ``together.sqlite``) both number their runs from 1, and a shared ``runs/`` would make
    one store's run 3 overwrite, and its pruning delete, the other's ``3.pt``.
    """
    store_path = Path(store_path)
    name = "runs" if store_path.name == "runs.sqlite" else f"{store_path.stem}-runs"
    return store_path.parent / name


def image_root() -> Path:
    """The only tree that ``imagefolder:`` data sets may be read from (created if missing)."""
    current = settings()
    path = current.image_root
    if path == current.data_dir / "imagefolders":
        data_dir()  # an unusable data directory raises its one-line StorageError first
    path.mkdir(parents=True, exist_ok=True)
    return path
