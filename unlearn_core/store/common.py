"""What every part of the run store shares: its errors and warning, the run-id rule, the metric columns.

A run id is a whole number from 1 to ``MAX_ROW_ID`` (SQLite's largest INTEGER) written in ASCII digits;
``code_version`` names the code that made a run (``git:<commit>``, ``+dirty`` with local changes).
"""

from __future__ import annotations

import subprocess
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from unlearn_core.errors import UnlearnError, UnlearnWarning
from unlearn_core.parsing import ascii_int
from unlearn_core.report import HEADLINE_METRICS

METRIC_KEYS = HEADLINE_METRICS  # the indexed metric columns of the runs table
SUMMARY_KEYS = ("seconds", "retrain_seconds", "rte", "avg_gap")
STATUSES = ("running", "done", "failed", "cancelled")
MAX_ROW_ID = 2**63 - 1  # SQLite's largest INTEGER; a larger id cannot exist and cannot even be bound


class RunNotFoundError(UnlearnError):
    """No run has the requested id."""


class RunStoreError(UnlearnError):
    """The run store cannot be opened or a request to it is invalid."""


class RunStoreWarning(UnlearnWarning):
    """A run could not be read in full (skipped or shown without its report), or a checkpoint was pruned."""


def warn(message: str) -> None:
    """Issue a :class:`RunStoreWarning` pointing at the caller of the store method that hit the problem."""
    warnings.warn(message, RunStoreWarning, stacklevel=3)


def run_id_from_text(value: Any) -> int:
    """A run id from user text: ASCII digits, 1..2**63-1, else :class:`RunNotFoundError` with one clear line."""
    try:
        run_id = ascii_int(value)
    except (TypeError, ValueError):
        raise RunNotFoundError(f"run id must be a whole number, got {str(value)[:40]!r}") from None
    if not 1 <= run_id <= MAX_ROW_ID:
        raise RunNotFoundError(f"no run with id {str(run_id)[:40]} (ids are whole numbers from 1)")
    return run_id


def now() -> str:
    """The current UTC time as ISO 8601 with milliseconds (the store's timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


_code_version_cache: str | None = None


def code_version() -> str:
    """``git:<commit>`` (``+dirty`` with local changes) of the package checkout, else the package version."""
    global _code_version_cache
    if _code_version_cache is None:
        from unlearn_core import __version__

        repo = Path(__file__).resolve().parents[2]
        version = f"unlearn_core {__version__}"
        try:
            commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=5)
            if commit.returncode == 0 and commit.stdout.strip():
                version = f"git:{commit.stdout.strip()[:12]}"
                dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no",
                                        "--", "unlearn_core"], capture_output=True, text=True, timeout=5)
                if dirty.returncode == 0 and dirty.stdout.strip():
                    version += "+dirty"
        except (OSError, subprocess.SubprocessError):
            pass
        _code_version_cache = version
    return _code_version_cache
