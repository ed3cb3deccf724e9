"""The run store's checkpoint files: where they live, the byte quota that prunes the oldest, stale temp files.

A store keeps each run's unlearned checkpoint as ``<checkpoint dir>/<id>.pt``
(:func:`unlearn_core.paths.checkpoint_dir_for`), and beside it the model's softmax outputs
(``<id>.outputs.npz``), removed with it. Run checkpoints are kept under
a byte quota (``UNLEARN_RUN_CHECKPOINT_QUOTA_MB``) that prunes the oldest
unpinned ones, never a report; only files at the store's own ``<id>.pt`` path
are ever counted or deleted. Temporary files that killed writers left behind
are removed when a writable store is opened.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from unlearn_core import paths
from unlearn_core.jsonsafe import one_line
from unlearn_core.settings import SettingsError, settings
from unlearn_core.store.common import RunNotFoundError, RunStoreError, now, run_id_from_text, warn

QUOTA_ENV = "UNLEARN_RUN_CHECKPOINT_QUOTA_MB"
STALE_TEMP_SECONDS = 3600


def run_checkpoint_quota_bytes() -> int:
    """The run-checkpoint quota in bytes: ``settings().run_checkpoint_quota_mb`` (``UNLEARN_RUN_CHECKPOINT_QUOTA_MB``,
    MiB, default 2048; 0 keeps only pinned runs' checkpoints); a bad setting is a :class:`RunStoreError`."""
    try:
        return settings().run_checkpoint_quota_bytes
    except SettingsError as error:
        raise RunStoreError(str(error)) from None


def run_checkpoint_path(run_id: int) -> Path:
    """Where the default store keeps a run's unlearned checkpoint: ``data_dir()/runs/<id>.pt``."""
    return paths.data_dir() / "runs" / f"{int(run_id)}.pt"


class CheckpointFiles:
    """The run-checkpoint part of :class:`~unlearn_core.store.RunStore` (its ``path``, ``_read``, ``_write``)."""

    path: Path

    @property
    def checkpoint_dir(self) -> Path:
        """Where this store keeps its runs' checkpoints (:func:`unlearn_core.paths.checkpoint_dir_for`)."""
        return paths.checkpoint_dir_for(self.path)

    def checkpoint_path(self, run_id: int) -> Path:
        """Where this store keeps a run's checkpoint: ``runs/<id>.pt`` beside ``runs.sqlite``.

        For the default store that is :func:`run_checkpoint_path`; other store names use ``<stem>-runs/``.
        """
        return self.checkpoint_dir / f"{int(run_id)}.pt"

    def run_outputs_path(self, run_id: int) -> Path:
        """Where this store keeps a run's softmax outputs, beside its checkpoint: ``<id>.outputs.npz``."""
        return self.checkpoint_dir / f"{int(run_id)}.outputs.npz"

    def save_run_outputs(self, run_id: int, outputs: dict) -> bool:
        """Keep a run's softmax outputs (``{"forget", "retain", "test"}`` arrays) beside its checkpoint, atomically.

        Returns whether they were written; a failure (disk full) warns and loses only the shortcut: a view of
        the run then evaluates its model again.
        """
        import io

        import numpy as np

        from unlearn_core.checkpoints import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.asarray(values, dtype=np.float32) for name, values in outputs.items()})
        try:
            atomic_write_bytes(self.run_outputs_path(run_id), buffer.getvalue())
            return True
        except OSError as error:
            warn(f"run {run_id}: its outputs were not kept: {one_line(error)}")
            return False

    def run_outputs(self, run_id: int) -> dict | None:
        """A run's stored softmax outputs, or None when there are none (or the file cannot be read)."""
        import numpy as np

        path = self.run_outputs_path(run_id)
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError):
            return None

    def remove_run_checkpoint(self, run_id: int) -> bool:
        """Delete this store's checkpoint file of a run (only ever ``<checkpoint dir>/<id>.pt``) and the outputs
        kept beside it (``<id>.outputs.npz``)."""
        with contextlib.suppress(OSError):
            self.run_outputs_path(run_id).unlink(missing_ok=True)
        try:
            self.checkpoint_path(run_id).unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as error:
            warn(f"run {run_id}: cannot remove its checkpoint: {one_line(error)}")
            return False

    def sweep_stale_temp_files(self, older_than: float | None = None) -> int:
        """Delete the temporary files killed checkpoint writers left in the checkpoint folder; returns how many.

        Only files untouched for ``older_than`` seconds (default an hour) go, so a write in progress in another
        process is never pulled from under it. Called when a writable store is opened.
        """
        folder = self.checkpoint_dir
        if not folder.is_dir():
            return 0
        cutoff = time.time() - (STALE_TEMP_SECONDS if older_than is None else older_than)
        removed = 0
        temps = [*folder.glob(".*.pt.*.tmp"), *folder.glob(".*.outputs.npz.*.tmp")]
        for temp in temps:  # the names checkpoints.atomic_write_bytes gives its temp files
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    removed += 1
        return removed

    # -- run checkpoints: pinning and the quota ----------------------------------------------------------------
    def pin(self, run_id, pinned: bool = True) -> dict:
        """Pin (or unpin) a run so the quota never prunes its checkpoint; returns the run."""
        run_id = run_id_from_text(run_id)
        with self._write() as conn:
            cursor = conn.execute("UPDATE runs SET pinned = ? WHERE id = ?", (1 if pinned else 0, run_id))
            if cursor.rowcount == 0:
                raise RunNotFoundError(f"no run with id {run_id}")
        return self.get(run_id)

    def checkpoint_usage(self) -> tuple[int, int]:
        """``(bytes, files)`` of the run checkpoints this store holds (those in its checkpoint folder)."""
        with self._read() as conn:
            rows = conn.execute("SELECT id, checkpoint_path FROM runs WHERE checkpoint_path IS NOT NULL").fetchall()
        sizes = [self._owned_checkpoint_size(row["id"], row["checkpoint_path"]) for row in rows]
        sizes = [size for size in sizes if size is not None]
        return sum(sizes), len(sizes)

    def owned_checkpoint(self, run: dict) -> Path | None:
        """The run's checkpoint file to serve: this store's own ``<id>.pt`` when the row names it and it exists.

        A row whose ``checkpoint_path`` names any other file (edited by hand, or copied from another store) gets
        ``None``: a download serves only what the store itself wrote.
        """
        run_id = run.get("id")
        if run_id is None or self._owned_checkpoint_size(int(run_id), run.get("checkpoint_path")) is None:
            return None
        return self.checkpoint_path(int(run_id))

    def _owned_checkpoint_size(self, run_id: int, recorded: Any) -> int | None:
        """The size of a run's checkpoint if the row points at this store's own ``<id>.pt``, else None.

        Only such files are counted or deleted: a row edited to point elsewhere (``/etc/passwd``) must not
        make pruning delete that file.
        """
        expected = self.checkpoint_path(run_id)
        try:
            if not isinstance(recorded, str) or os.path.realpath(recorded) != os.path.realpath(expected):
                return None
            return expected.stat().st_size
        except (OSError, ValueError):
            return None

    def enforce_checkpoint_quota(self, quota_bytes: int | None = None) -> list[int]:
        """Prune the oldest unpinned run checkpoints until the rest fit the quota; returns the pruned run ids.

        Reports and rows stay; a pruned run's ``checkpoint_path`` becomes NULL and ``checkpoint_pruned_at``
        records when. Pinned runs are never pruned (if they alone exceed the quota, a warning says so).
        ``quota_bytes`` defaults to :func:`run_checkpoint_quota_bytes`.
        """
        quota = run_checkpoint_quota_bytes() if quota_bytes is None else int(quota_bytes)
        pruned: list[int] = []
        with self._write() as conn:  # selection and row updates in one transaction: two pruners never race
            rows = conn.execute("SELECT id, checkpoint_path, pinned FROM runs WHERE checkpoint_path IS NOT NULL "
                                "ORDER BY id ASC").fetchall()
            sized = [(row, self._owned_checkpoint_size(row["id"], row["checkpoint_path"])) for row in rows]
            sized = [(row, size) for row, size in sized if size is not None]
            total = sum(size for _, size in sized)
            for row, size in sized:  # oldest first
                if total <= quota:
                    break
                if row["pinned"]:
                    continue
                conn.execute("UPDATE runs SET checkpoint_path = NULL, checkpoint_pruned_at = ? WHERE id = ?",
                             (now(), row["id"]))
                pruned.append(int(row["id"]))
                total -= size
        # Files go after the commit: a crash in between leaves an orphan file, never a row pointing at nothing.
        for run_id in pruned:
            self.remove_run_checkpoint(run_id)
        if total > quota:
            warn(f"pinned run checkpoints alone use {total / 2**20:.1f} MiB, over the {quota / 2**20:g} MiB "
                  f"quota ({QUOTA_ENV}); unpin some (python -m unlearn_core runs unpin ID)")
        return pruned
