"""The run store's SQLite schema, its migrations, and how a store file is opened.

The database runs in WAL mode and every write is one short ``BEGIN IMMEDIATE``
transaction on a fresh connection, so several threads and processes (the CLI,
the app, a bench) can write at once and readers never block writers.
``PRAGMA user_version`` records the schema version; columns added later
(``CHECKPOINT_COLUMNS``) are added by name, not by version number, so that
other additions merge without renumbering. A store that cannot be written
(read-only file, folder or file system) is opened read-only (``mode=ro``, else
``immutable=1``) so it can still be listed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

from unlearn_core.jsonsafe import one_line
from unlearn_core.store.common import RunStoreError

SCHEMA_VERSION = 2  # 2: the sweeps and sweep_runs tables
BUSY_TIMEOUT_MS = 60_000
# Added after schema version 1 by StoreFile._add_checkpoint_columns.
CHECKPOINT_COLUMNS = (("pinned", "INTEGER NOT NULL DEFAULT 0"), ("checkpoint_pruned_at", "TEXT"))

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    dataset TEXT,
    model TEXT,
    forget TEXT,
    method TEXT,
    seed INTEGER,
    device TEXT,
    tag TEXT,
    params_json TEXT NOT NULL,
    config_json TEXT NOT NULL,
    code_version TEXT,
    pid INTEGER,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    seconds REAL,
    retrain_seconds REAL,
    rte REAL,
    avg_gap REAL,
    FA REAL, RA REAL, TA REAL, Acc_f REAL, Acc_r REAL, MIA_svc REAL, MIA_entropy REAL,
    report_json TEXT,
    checkpoint_path TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_lookup ON runs (dataset, model, forget, method);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_tag ON runs (tag);
CREATE TABLE IF NOT EXISTS sweeps (
    tag TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_runs (
    tag TEXT NOT NULL,
    run_key TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (tag, run_key)
);
CREATE INDEX IF NOT EXISTS sweep_runs_key ON sweep_runs (run_key);
"""


def is_read_only_error(error: BaseException) -> bool:
    text = str(error).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


class StoreFile:
    """One SQLite store file: opening (writable or read-only), schema creation and migration, connections."""

    path: Path

    # -- opening: folders, read-only stores ---------------------------------------------------------------------
    def _prepare_folder(self) -> None:
        if self.path.is_dir():
            raise RunStoreError(f"the run store {str(self.path)!r} is a folder; give a database file")
        if self.path.exists():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or one_line(error)
            raise RunStoreError(f"cannot create the run store {str(self.path)!r}: {reason}") from None

    def _writable(self) -> bool:
        """Whether this process may write the database and create its -wal/-shm files beside it."""
        folder_ok = os.access(self.path.parent, os.W_OK | os.X_OK)
        if not self.path.exists():
            if not folder_ok:
                raise RunStoreError(f"cannot create the run store {str(self.path)!r}: its folder is read-only")
            return True
        return folder_ok and os.access(self.path, os.R_OK | os.W_OK)

    def _open_read_only(self) -> None:
        """Open for reading only: ``mode=ro`` when sqlite can, else ``immutable=1``.

        A WAL database needs its -shm file even to be read; in a read-only folder where none exists, ``mode=ro``
        fails ("attempt to write a readonly database") and only ``immutable=1`` reads it. Nothing can write
        there, so treating the file as immutable is sound; a -wal left beside it by a crashed writer is then not
        seen (its last transactions are missing from the listing).
        """
        if not os.access(self.path, os.R_OK):
            raise RunStoreError(f"cannot open the run store {str(self.path)!r}: permission denied")
        base = "file:" + urllib.parse.quote(str(self.path.resolve()))
        last_error: Exception | None = None
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            self._ro_uri = base + query
            try:
                with self._read() as conn:
                    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                    conn.execute("SELECT id FROM runs LIMIT 1").fetchall()
                self.read_only = True
                return
            except sqlite3.DatabaseError as error:
                last_error = error
        self._ro_uri = None
        raise RunStoreError(f"cannot open the run store {str(self.path)!r} for reading: "
                            f"{one_line(last_error)}") from None

    def require_writable(self) -> None:
        """Raise :class:`RunStoreError` if this store was opened read-only (check before work, not after it)."""
        if self.read_only:
            raise RunStoreError(f"the run store {str(self.path)!r} is read-only here (it was opened for reading); "
                                "use a writable store (--store, or UNLEARN_DATA_DIR)")

    def _add_checkpoint_columns(self) -> None:
        """Add ``pinned`` and ``checkpoint_pruned_at`` to stores made before the checkpoint quota existed."""
        with self._read() as conn:
            have = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
        if all(name in have for name, _ in CHECKPOINT_COLUMNS):
            return
        with self._write() as conn:
            # Re-read under the write lock: another process opening the store may have just added them.
            have = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
            for name, declaration in CHECKPOINT_COLUMNS:
                if name not in have:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {declaration}")

    # -- connections -------------------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._ro_uri is not None:
            conn = sqlite3.connect(self._ro_uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.row_factory = sqlite3.Row
            return conn
        # isolation_level=None: transactions are explicit, so each write is exactly one BEGIN IMMEDIATE..COMMIT.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._open()
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; taking the write lock up front avoids deadlocks between upgrading readers."""
        self.require_writable()
        conn = self._open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a failed COMMIT/statement may have ended it already
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as error:
            # "database or disk is full", "attempt to write a readonly database", "disk I/O error": one line.
            raise RunStoreError(f"cannot write to the run store {str(self.path)!r}: {one_line(error)}") from None
        finally:
            conn.close()

    def _initialise(self) -> None:
        conn = self._open()
        try:
            # Switching to WAL needs a moment with no other writer; another process may be creating the file too.
            deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
            while True:
                try:
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            if str(mode).lower() != "wal":
                raise RunStoreError(f"the run store {self.path} cannot use WAL mode (got {mode!r})")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        finally:
            conn.close()
