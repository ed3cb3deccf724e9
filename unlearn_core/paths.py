"""Where the library keeps its files: data sets, checkpoints, the run store.

``UNLEARN_DATA_DIR`` overrides the default ``~/.cache/unlearning-lab``, and
``UNLEARN_IMAGE_ROOT`` the root that ``imagefolder:`` paths must stay inside.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The root directory for downloads, checkpoints and the run store."""
    root = os.environ.get("UNLEARN_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "unlearning-lab")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_dir() -> Path:
    path = data_dir() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir() -> Path:
    path = data_dir() / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def image_root() -> Path:
    """The only tree that ``imagefolder:`` data sets may be read from."""
    root = os.environ.get("UNLEARN_IMAGE_ROOT") or str(data_dir() / "imagefolders")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
