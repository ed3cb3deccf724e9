"""Where the library keeps its files: data sets, checkpoints, the run store.

``UNLEARN_DATA_DIR`` overrides the default ``~/.cache/unlearning-lab``, and
``UNLEARN_IMAGE_ROOT`` the root that ``imagefolder:`` paths must stay inside.
"""

from __future__ import annotations

import os
from pathlib import Path

from unlearn_core.errors import StorageError


def data_dir_location() -> Path:
    """Where the data directory is, without creating it (for checks that must not touch the disk)."""
    root = os.environ.get("UNLEARN_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "unlearning-lab")
    return Path(root)


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
        where = "UNLEARN_DATA_DIR" if os.environ.get("UNLEARN_DATA_DIR") else "the data directory"
        raise StorageError(f"{where} {str(path)!r} cannot be used: {reason}; set UNLEARN_DATA_DIR to a "
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
    """The only tree that ``imagefolder:`` data sets may be read from."""
    root = os.environ.get("UNLEARN_IMAGE_ROOT") or str(data_dir() / "imagefolders")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
