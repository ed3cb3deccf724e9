"""The run store: every unlearning run recorded in one SQLite database.

Each run keeps its configuration (data set, model, forget set, method,
resolved parameters, seed, device), the code version, timings, every metric of
the report (indexed columns for the headline ones, the whole report as JSON,
per-class accuracies included) and the path of its unlearned checkpoint.

The database runs in WAL mode and every write is one short ``BEGIN IMMEDIATE``
transaction on a fresh connection, so several threads and processes (the CLI,
the app, a bench) can write at once, readers never block writers, and a crash
in the middle of a run leaves every earlier run untouched (the crashed run
simply stays ``running``). :func:`run_and_record` wraps one method run:
start, run, evaluate, save the checkpoint atomically, finish (or fail).

Hardening (issue 11): a store that cannot be written (read-only file, folder
or file system) is opened read-only (``mode=ro``, else ``immutable=1``) so it
can still be listed; rows whose JSON cannot be decoded come back with
``report=None`` and a ``read_error`` text, and rows on a damaged page are
skipped, each with a :class:`RunStoreWarning`; run checkpoints are kept under a
byte quota (``UNLEARN_RUN_CHECKPOINT_QUOTA_MB``) that prunes the oldest
unpinned ones, never a report; a killed run's checkpoint and stale temporary
files are removed when the run is reaped.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sqlite3
import subprocess
import time
import urllib.parse
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from unlearn_core import paths
from unlearn_core.errors import Cancelled, UnlearnError, UnlearnWarning
from unlearn_core.parsing import ascii_int

SCHEMA_VERSION = 2  # 2: the sweeps and sweep_runs tables
BUSY_TIMEOUT_MS = 60_000
METRIC_KEYS = ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy")
SUMMARY_KEYS = ("seconds", "retrain_seconds", "rte", "avg_gap")
STATUSES = ("running", "done", "failed", "cancelled")
MAX_ROW_ID = 2**63 - 1  # SQLite's largest INTEGER; a larger id cannot exist and cannot even be bound
QUOTA_ENV = "UNLEARN_RUN_CHECKPOINT_QUOTA_MB"
DEFAULT_QUOTA_MB = 2048
STALE_TEMP_SECONDS = 3600
# Added after schema version 1 by _add_checkpoint_columns (by name, not by version number, so that other
# additions to the schema merge without renumbering).
CHECKPOINT_COLUMNS = (("pinned", "INTEGER NOT NULL DEFAULT 0"), ("checkpoint_pruned_at", "TEXT"))

_SCHEMA = """
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


class RunNotFoundError(UnlearnError):
    """No run has the requested id."""


class RunStoreError(UnlearnError):
    """The run store cannot be opened or a request to it is invalid."""


class RunStoreWarning(UnlearnWarning):
    """A run could not be read in full (skipped or shown without its report), or a checkpoint was pruned."""


def _warn(message: str) -> None:
    warnings.warn(message, RunStoreWarning, stacklevel=3)


def _one_line(text: Any, limit: int = 200) -> str:
    """sqlite and OS messages as one short line (they can quote stored text)."""
    return " ".join(str(text).split())[:limit]


def run_checkpoint_quota_bytes() -> int:
    """The run-checkpoint quota: ``UNLEARN_RUN_CHECKPOINT_QUOTA_MB`` (MiB, 0 keeps none) if set, else 2048 MiB."""
    raw = os.environ.get(QUOTA_ENV, "").strip()
    if not raw:
        return DEFAULT_QUOTA_MB * 2**20
    try:
        megabytes = float(raw) if raw.isascii() else float("nan")  # float() too takes non-ASCII digits
    except ValueError:
        megabytes = float("nan")
    if not 0 <= megabytes < float("inf"):
        raise RunStoreError(f"{QUOTA_ENV} must be a number of MiB, 0 or more, got {raw[:40]!r}")
    return int(megabytes * 2**20)


def run_id_from_text(value: Any) -> int:
    """A run id from user text: ASCII digits, 1..2**63-1, else :class:`RunNotFoundError` with one clear line."""
    try:
        run_id = ascii_int(value)
    except (TypeError, ValueError):
        raise RunNotFoundError(f"run id must be a whole number, got {str(value)[:40]!r}") from None
    if not 1 <= run_id <= MAX_ROW_ID:
        raise RunNotFoundError(f"no run with id {str(run_id)[:40]} (ids are whole numbers from 1)")
    return run_id


def checkpoint_dir_for(store_path: str | Path) -> Path:
    """The folder a store keeps its runs' checkpoints in: ``runs/`` beside ``runs.sqlite``.

    Any other store file name gets its own ``<stem>-runs/`` folder: two stores in one folder (say
    ``alone.sqlite`` and ``together.sqlite``) both number their runs from 1, and sharing ``runs/`` made one
    store's run 3 overwrite, and now would let pruning delete, the other's ``3.pt``.
    """
    store_path = Path(store_path)
    name = "runs" if store_path.name == "runs.sqlite" else f"{store_path.stem}-runs"
    return store_path.parent / name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_read_only_error(error: BaseException) -> bool:
    text = str(error).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _jsonable(value: Any) -> Any:
    """NaN/inf to None and numpy scalars to Python numbers, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if hasattr(value, "item"):  # numpy / torch scalar
        return _jsonable(value.item())
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(_jsonable(value), allow_nan=False, sort_keys=True)


_code_version_cache: str | None = None


def code_version() -> str:
    """``git:<commit>`` (``+dirty`` with local changes) of the package checkout, else the package version."""
    global _code_version_cache
    if _code_version_cache is None:
        from unlearn_core import __version__

        repo = Path(__file__).resolve().parents[1]
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


def default_store_path() -> Path:
    return paths.data_dir() / "runs.sqlite"


def run_checkpoint_path(run_id: int) -> Path:
    """Where the default store keeps a run's unlearned checkpoint: ``data_dir()/runs/<id>.pt``."""
    return paths.data_dir() / "runs" / f"{int(run_id)}.pt"


class RunStore:
    """The SQLite run store. Cheap to construct; opens a connection per call, so share it freely."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_store_path()
        self.read_only = False
        self._ro_uri: str | None = None
        self._prepare_folder()
        if not self._writable():
            self._open_read_only()
            return
        try:
            self._initialise()
            self._add_checkpoint_columns()
            self.reap_stale()
        except sqlite3.DatabaseError as error:
            if self.path.is_file() and _is_read_only_error(error):
                # os.access can say yes where the file system says no (read-only mounts seen through some
                # layers, ACLs): fall back on what sqlite itself found.
                self._open_read_only()
                return
            raise RunStoreError(f"cannot open the run store {str(self.path)!r}: {_one_line(error)}") from None
        self.sweep_stale_temp_files()

    # -- opening: folders, read-only stores ---------------------------------------------------------------------
    def _prepare_folder(self) -> None:
        if self.path.is_dir():
            raise RunStoreError(f"the run store {str(self.path)!r} is a folder; give a database file")
        if self.path.exists():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or _one_line(error)
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
                            f"{_one_line(last_error)}") from None

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
            raise RunStoreError(f"cannot write to the run store {str(self.path)!r}: {_one_line(error)}") from None
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
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        finally:
            conn.close()

    # -- writes ------------------------------------------------------------------------------------------------
    def start(self, config: dict) -> int:
        """Record a new run as ``running``; returns its id.

        ``config`` holds ``dataset``, ``model``, ``forget``, ``method``,
        ``params`` (dict), ``seed`` and ``device``; any other keys (``tag``,
        recipe, checkpoint keys) are kept in the stored config.
        """
        if not isinstance(config, dict):
            raise RunStoreError("a run's config must be a dict")
        config = _jsonable(config)
        params = config.get("params") or {}
        seed = config.get("seed")
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (status, dataset, model, forget, method, seed, device, tag, params_json, "
                "config_json, code_version, pid, started_at) VALUES ('running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (config.get("dataset"), config.get("model"), config.get("forget"), config.get("method"),
                 None if seed is None else int(seed), config.get("device"), config.get("tag"),
                 _dumps(params), _dumps(config), code_version(), os.getpid(), _now()))
            return int(cursor.lastrowid)

    def finish(self, run_id: int, report: dict, checkpoint_path: str | None = None, note: str | None = None) -> None:
        """Mark a run ``done`` with its report (see ``pipeline.build_report``) and checkpoint path.

        ``note`` goes into the ``error`` column of a finished run (e.g. why its checkpoint is missing).
        """
        unlearned = report.get("unlearned") or {}
        values = [_finite_or_none(report.get(k)) for k in SUMMARY_KEYS]
        values += [_finite_or_none(unlearned.get(k)) for k in METRIC_KEYS]
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE runs SET status = 'done', finished_at = ?, report_json = ?, checkpoint_path = ?, error = ?, "
                f"{', '.join(f'{k} = ?' for k in SUMMARY_KEYS + METRIC_KEYS)} WHERE id = ?",
                [_now(), _dumps(report), None if checkpoint_path is None else str(checkpoint_path), note, *values,
                 int(run_id)])
            if cursor.rowcount == 0:
                raise RunNotFoundError(f"no run with id {run_id}")

    def fail(self, run_id: int, error: str, status: str = "failed") -> None:
        """Mark a run ``failed`` or ``cancelled`` with its error message."""
        if status not in ("failed", "cancelled"):
            raise RunStoreError(f"a run can fail as 'failed' or 'cancelled', not {status!r}")
        with self._write() as conn:
            cursor = conn.execute("UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                                  (status, str(error), _now(), int(run_id)))
            if cursor.rowcount == 0:
                raise RunNotFoundError(f"no run with id {run_id}")

    def reap_stale(self) -> int:
        """Mark ``running`` runs whose process is gone (killed, crashed) as failed; returns how many.

        Called when a store is opened, so a killed worker's run does not stay
        "running" forever. A live pid (possibly reused) is left alone. A
        process killed between saving the checkpoint and recording the report
        leaves a complete ``<id>.pt`` beside a run that has no report; that
        file is removed with the reaping (a failed run keeps no checkpoint).
        """
        with self._read() as conn:
            rows, problems = self._select_rows(conn, ["status = ?"], ["running"], None)
        for problem in problems:
            _warn(f"while looking for interrupted runs: {problem}")
        stale = []
        for row in rows:
            try:
                pid = int(row["pid"]) if row["pid"] is not None else None
            except (TypeError, ValueError):
                continue
            if pid is not None and not _pid_alive(pid):
                stale.append(int(row["id"]))
        for run_id in stale:
            with self._write() as conn:
                reaped = conn.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? "
                                      "WHERE id = ? AND status = 'running'",
                                      ("interrupted: the process running it is gone", _now(), run_id)).rowcount
            if reaped:
                self._remove_run_checkpoint(run_id)
        return len(stale)

    def _remove_run_checkpoint(self, run_id: int) -> bool:
        """Delete this store's checkpoint file of a run (only ever ``<checkpoint dir>/<id>.pt``)."""
        try:
            self.checkpoint_path(run_id).unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as error:
            _warn(f"run {run_id}: cannot remove its checkpoint: {_one_line(error)}")
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
        for temp in folder.glob(".*.pt.*.tmp"):  # the names checkpoints.atomic_write_bytes gives its temp files
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    removed += 1
        return removed

    # -- reads -------------------------------------------------------------------------------------------------
    @staticmethod
    def _row(row: sqlite3.Row) -> dict:
        """Decode one row without ever raising: what cannot be decoded is named in ``read_error``.

        A row edited by hand, written by a buggy tool or torn by a bad disk must not take every reader of the
        store down with it (one such row broke the whole Results page and ``runs show``/``export``).
        """
        out = {key: row[key] for key in row.keys() if not key.endswith("_json")}
        problems = []
        for column, key, default in (("params_json", "params", {}), ("config_json", "config", {}),
                                     ("report_json", "report", None)):
            raw = row[column] if column in row.keys() else None
            out[key] = default
            if raw is None or raw == "":
                continue
            try:
                value = json.loads(raw)
            except (TypeError, ValueError, RecursionError) as error:
                problems.append(f"its {key} is not readable JSON ({type(error).__name__})")
                continue
            if not isinstance(value, dict):
                problems.append(f"its {key} is a JSON {type(value).__name__}, not an object")
                continue
            out[key] = value
        for key in SUMMARY_KEYS + METRIC_KEYS:
            value = out.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                problems.append(f"its {key} is not a number")
                out[key] = None
        if problems:
            out["read_error"] = "; ".join(problems)
        return out

    def _select_rows(self, conn: sqlite3.Connection, clauses: list[str], values: list,
                     limit: int | None) -> tuple[list[sqlite3.Row], list[str]]:
        """Rows matching ``clauses``, newest first, skipping rows that sit on a damaged page.

        The plain query is tried first. If sqlite reports damage ("database disk image is malformed"), the ids
        are collected by walking the table from both ends and through each index, each up to the damage, and
        every id is read on its own, so one bad page costs only the runs stored on it.
        """
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT * FROM runs{where} ORDER BY id DESC" + (" LIMIT ?" if limit is not None else "")
        try:
            return conn.execute(query, values + ([limit] if limit is not None else [])).fetchall(), []
        except sqlite3.OperationalError:
            raise  # locked, I/O error, no such table: not damage that reading around could avoid
        except sqlite3.DatabaseError as error:  # SQLITE_CORRUPT / SQLITE_NOTADB: "database disk image is malformed"
            damage = _one_line(error)
        ids: set[int] = set()
        scans = ["SELECT id FROM runs ORDER BY id ASC", "SELECT id FROM runs ORDER BY id DESC"]
        scans += [f"SELECT id FROM runs INDEXED BY {index}" for index in ("runs_status", "runs_tag", "runs_lookup")]
        for scan in scans:
            try:
                for (run_id,) in conn.execute(scan):  # steps row by row: keeps what was read before the damage
                    ids.add(int(run_id))
            except sqlite3.DatabaseError:
                continue
        rows, lost = [], []
        if limit == 0:
            ids = set()
        one = f"SELECT * FROM runs WHERE id = ?{' AND ' if clauses else ''}{' AND '.join(clauses)}"
        for run_id in sorted(ids, reverse=True):
            try:
                row = conn.execute(one, [run_id, *values]).fetchone()
            except sqlite3.DatabaseError:
                lost.append(run_id)
                continue
            if row is not None:
                rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
        problem = (f"the run store {str(self.path)!r} is damaged ({damage}); only the runs that can still be read "
                   "are shown")
        if lost:
            shown = ", ".join(str(i) for i in sorted(lost)[:10]) + (" ..." if len(lost) > 10 else "")
            problem += f"; run(s) {shown} cannot be read and are skipped"
        return rows, [problem]

    def get(self, run_id: int) -> dict:
        """One run as a dict (``config``, ``params`` and ``report`` decoded); raises if there is none.

        A run whose JSON cannot be decoded comes back with ``report=None`` and ``read_error`` (and a
        :class:`RunStoreWarning`); a run on a damaged page raises :class:`RunStoreError`.
        """
        run_id = run_id_from_text(run_id)
        try:
            with self._read() as conn:
                row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        except sqlite3.DatabaseError as error:
            raise RunStoreError(f"run {run_id} cannot be read from {str(self.path)!r}: {_one_line(error)}") from None
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        run = self._row(row)
        if run.get("read_error"):
            _warn(f"run {run_id}: {run['read_error']}; shown without it")
        return run

    def list(self, dataset: str | None = None, model: str | None = None, forget: str | None = None,
             method: str | None = None, status: str | None = None, limit: int | None = None,
             tag: str | None = None, problems: list | None = None) -> list[dict]:
        """Runs matching every given filter, newest first.

        Never fails on one bad run: a run whose JSON cannot be decoded comes back with ``report=None`` (or
        empty ``params``/``config``) and a ``read_error`` text; runs on a damaged page are skipped. Each such
        problem is a :class:`RunStoreWarning`, or, when a ``problems`` list is given, appended to it instead
        (for a page that shows its own warnings; see :meth:`list_checked`).
        """
        clauses, values = [], []
        for column, value in (("dataset", dataset), ("model", model), ("forget", forget), ("method", method),
                              ("status", status), ("tag", tag)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if limit is not None:
            try:
                limit = ascii_int(limit)
            except (TypeError, ValueError):
                raise RunStoreError(f"limit must be a whole number, got {str(limit)[:40]!r}") from None
            if not 0 <= limit <= MAX_ROW_ID:
                raise RunStoreError(f"limit must be a whole number from 0 to {MAX_ROW_ID}, got {str(limit)[:40]}")
        try:
            with self._read() as conn:
                rows, found = self._select_rows(conn, clauses, values, limit)
        except sqlite3.DatabaseError as error:  # not even the schema could be read
            raise RunStoreError(f"cannot read the run store {str(self.path)!r}: {_one_line(error)}") from None
        runs = [self._row(row) for row in rows]
        found += [f"run {run['id']}: {run['read_error']}; shown without it" for run in runs if run.get("read_error")]
        for problem in found:
            if problems is not None:
                problems.append(problem)
            else:
                _warn(problem)
        return runs

    def list_checked(self, **filters) -> tuple[list[dict], list[str]]:
        """:meth:`list` that returns its problems (one line each) instead of warning: ``(runs, problems)``."""
        problems: list[str] = []
        return self.list(**filters, problems=problems), problems

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    @property
    def checkpoint_dir(self) -> Path:
        """Where this store keeps its runs' checkpoints (:func:`checkpoint_dir_for`)."""
        return checkpoint_dir_for(self.path)

    def checkpoint_path(self, run_id: int) -> Path:
        """Where this store keeps a run's checkpoint: ``runs/<id>.pt`` beside ``runs.sqlite``.

        For the default store that is :func:`run_checkpoint_path`; other store names use ``<stem>-runs/``.
        """
        return self.checkpoint_dir / f"{int(run_id)}.pt"

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
                             (_now(), row["id"]))
                pruned.append(int(row["id"]))
                total -= size
        # Files go after the commit: a crash in between leaves an orphan file, never a row pointing at nothing.
        for run_id in pruned:
            self._remove_run_checkpoint(run_id)
        if total > quota:
            _warn(f"pinned run checkpoints alone use {total / 2**20:.1f} MiB, over the {quota / 2**20:g} MiB "
                  f"quota ({QUOTA_ENV}); unpin some (python -m unlearn_core runs unpin ID)")
        return pruned

    # -- sweeps -----------------------------------------------------------------------------------------------
    # A sweep (unlearn_core.sweeps) is a tag, its spec, and links from run keys to runs. A run is linked only once
    # it is finished or failed, so a run whose driver died half-way is never taken as done on a resume.
    def save_sweep(self, tag: str, kind: str, spec: dict) -> None:
        """Create the sweep ``tag`` or refresh its spec (a re-run of a sweep may widen it)."""
        now = _now()
        with self._write() as conn:
            conn.execute("INSERT INTO sweeps (tag, kind, spec_json, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT(tag) DO UPDATE SET kind = excluded.kind, spec_json = excluded.spec_json, "
                         "updated_at = excluded.updated_at", (tag, kind, _dumps(spec), now, now))

    def get_sweep(self, tag: str) -> dict | None:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM sweeps WHERE tag = ?", (tag,)).fetchone()
            if row is None:
                return None
            count = conn.execute("SELECT COUNT(*) FROM sweep_runs WHERE tag = ?", (tag,)).fetchone()[0]
        return {"tag": row["tag"], "kind": row["kind"], "spec": json.loads(row["spec_json"]),
                "created_at": row["created_at"], "updated_at": row["updated_at"], "runs": int(count)}

    def list_sweeps(self) -> list[dict]:
        """Every sweep (bench runs included), newest first, with how many runs each links."""
        with self._read() as conn:
            rows = conn.execute("SELECT s.*, (SELECT COUNT(*) FROM sweep_runs r WHERE r.tag = s.tag) AS n "
                                "FROM sweeps s ORDER BY s.updated_at DESC").fetchall()
        return [{"tag": r["tag"], "kind": r["kind"], "spec": json.loads(r["spec_json"]), "created_at": r["created_at"],
                 "updated_at": r["updated_at"], "runs": int(r["n"])} for r in rows]

    def find_keys(self, keys: list[str]) -> dict[str, dict]:
        """``{run_key: {"id", "status"}}`` for keys some sweep already holds a finished or failed run of.

        A ``done`` run wins over a failed one for the same key.
        """
        found: dict[str, dict] = {}
        keys = list(dict.fromkeys(keys))
        with self._read() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                rows = conn.execute(
                    f"SELECT s.run_key, r.id, r.status FROM sweep_runs s JOIN runs r ON r.id = s.run_id "
                    f"WHERE s.run_key IN ({', '.join('?' * len(chunk))}) ORDER BY r.id", chunk).fetchall()
                for row in rows:
                    previous = found.get(row["run_key"])
                    if previous is None or previous["status"] != "done":
                        found[row["run_key"]] = {"id": int(row["id"]), "status": row["status"]}
        return found

    def link_sweep_run(self, tag: str, run_key: str, run_id: int, role: str) -> None:
        """Count run ``run_id`` (finished or failed) as the run of ``run_key`` in sweep ``tag``."""
        with self._write() as conn:
            conn.execute("INSERT INTO sweep_runs (tag, run_key, run_id, role) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT(tag, run_key) DO UPDATE SET run_id = excluded.run_id, role = excluded.role",
                         (tag, run_key, int(run_id), role))

    def unlink_sweep_runs(self, tag: str, keep: set[str]) -> int:
        """Drop the links of sweep ``tag`` whose keys are not in ``keep`` (the runs stay); returns how many."""
        with self._read() as conn:
            linked = [row[0] for row in conn.execute("SELECT run_key FROM sweep_runs WHERE tag = ?", (tag,))]
        stale = [key for key in linked if key not in keep]
        with self._write() as conn:
            for start in range(0, len(stale), 500):
                chunk = stale[start:start + 500]
                conn.execute(f"DELETE FROM sweep_runs WHERE tag = ? AND run_key IN ({', '.join('?' * len(chunk))})",
                             [tag, *chunk])
        return len(stale)

    def sweep_runs(self, tag: str) -> list[dict]:
        """The runs linked to sweep ``tag``, oldest first, each with its ``run_key`` and ``role``."""
        with self._read() as conn:
            rows = conn.execute("SELECT r.*, s.run_key AS run_key, s.role AS role FROM sweep_runs s "
                                "JOIN runs r ON r.id = s.run_id WHERE s.tag = ? ORDER BY r.id", (tag,)).fetchall()
        return [self._row(row) for row in rows]

    # -- export ------------------------------------------------------------------------------------------------
    @staticmethod
    def flat_row(run: dict) -> dict:
        """One run as flat CSV columns: identity, timings, then every metric for unlearned/original/retrained."""
        report = run.get("report") or {}
        row = {"id": run.get("id"), "status": run.get("status"), "method": run.get("method"),
               "dataset": run.get("dataset"), "model": run.get("model"), "forget": run.get("forget"),
               "seed": run.get("seed"), "device": run.get("device"), "tag": run.get("tag"),
               "code_version": run.get("code_version"), "started_at": run.get("started_at"),
               "finished_at": run.get("finished_at")}
        for key in SUMMARY_KEYS:
            row[key] = run.get(key)
        for which in ("unlearned", "original", "retrained"):
            metrics = report.get(which) or {}
            for key in METRIC_KEYS:
                row[f"{which}_{key}"] = metrics.get(key)
        unlearned = report.get("unlearned") or {}
        row["js_forget"] = unlearned.get("js_forget")
        row["js_test"] = unlearned.get("js_test")
        row["params"] = json.dumps(run.get("params") or {}, sort_keys=True)
        row["checkpoint_path"] = run.get("checkpoint_path")
        row["error"] = run.get("error")
        row["pinned"] = run.get("pinned")
        row["checkpoint_pruned_at"] = run.get("checkpoint_pruned_at")
        row["read_error"] = run.get("read_error")
        return row

    def export_csv(self, runs: list[dict], path: str | Path) -> None:
        """Write runs as a flat CSV (atomically); never onto the store or another managed file."""
        from unlearn_core.outputs import check_output_path, write_output_bytes

        check_output_path(path, store_path=self.path)

        rows = [self.flat_row(run) for run in runs]
        columns = list(self.flat_row({}).keys())
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        write_output_bytes(path, buffer.getvalue().encode())

    def export_json(self, runs: list[dict], path: str | Path) -> None:
        """Write runs (full dicts, reports included) as a JSON list (atomically); never onto a managed file."""
        from unlearn_core.outputs import check_output_path, write_output_bytes

        check_output_path(path, store_path=self.path)
        write_output_bytes(path, (json.dumps(_jsonable(runs), indent=2) + "\n").encode())


def delete_run(run_id: int, store: RunStore | None = None) -> dict:
    """Delete one finished run (done, failed or cancelled) and its checkpoint file; returns the deleted run.

    A run still ``running`` is refused: its worker would fail to record it.
    The row goes first, in one transaction, so a crash between the two steps
    leaves at worst an orphan file, never a row pointing at nothing. Only the
    store's own ``<checkpoint dir>/<id>.pt`` is removed: a path in the
    database is never trusted blindly.
    """
    store = store or RunStore()
    run_id = run_id_from_text(run_id)
    store.require_writable()
    run = store.get(run_id)
    if run["status"] == "running":
        raise RunStoreError(f"run {run_id} is still running; cancel it before deleting it")
    with store._write() as conn:
        conn.execute("DELETE FROM runs WHERE id = ? AND status != 'running'", (run_id,))
    store._remove_run_checkpoint(run_id)
    return run


def _error_text(error: BaseException) -> str:
    if isinstance(error, UnlearnError):
        return str(error) or type(error).__name__
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def run_and_record(setup, method: str, params: dict | None = None, progress=None, cancel=None,
                   store: RunStore | None = None, save_checkpoint: bool = True, tag: str | None = None,
                   extra_config: dict | None = None, evidence=None):
    """Run one method on a prepared setup and record it; returns ``(run_id, report, method_run)``.

    start -> ``pipeline.run_method`` -> ``pipeline.build_report`` -> the
    unlearned checkpoint saved atomically -> finish. A cancelled run is
    recorded as ``cancelled`` and any other error as ``failed`` (with its
    message); both re-raise. Bad parameters raise before anything is recorded.
    ``evidence`` (kinds or an ``EvidenceRequest``) adds the report's evidence section.
    """
    from unlearn_core.evidence import EvidenceRequest

    from unlearn_core import checkpoints
    from unlearn_core.methods import get_method
    from unlearn_core.pipeline import build_report, run_method
    from unlearn_core.progress import ProgressEvent

    store = store or RunStore()
    method_cls = get_method(method)
    resolved = method_cls.resolve_params(params)
    if save_checkpoint:
        run_checkpoint_quota_bytes()  # a bad quota setting fails here, not after the run's work
    evidence = EvidenceRequest.parse(evidence)
    config = {"dataset": setup.bundle.name, "model": setup.model_name, "forget": str(setup.split.spec),
              "method": method_cls.name, "params": resolved, "seed": setup.seed, "device": str(setup.device),
              "tag": tag, "recipe": setup.recipe.as_dict(), "original_checkpoint": setup.original.key,
              "retrained_checkpoint": setup.retrained.key if setup.retrained is not None else None,
              "n_forget": int(len(setup.split.forget_idx))}
    if evidence is not None:
        config["evidence"] = evidence.as_dict()
    config.update(extra_config or {})
    run_id = store.start(config)
    checkpoint = None
    try:
        run = run_method(setup, method_cls.name, resolved, progress, cancel, evidence=evidence)
        if progress is not None:  # its own stage, so a progress bar does not sit still at 100 % meanwhile
            progress(ProgressEvent(stage="evaluate", message="metrics of the unlearned model"))
        report = build_report(setup, run, evidence=evidence).to_dict()
        note = None
        if save_checkpoint:
            try:
                checkpoints.save_checkpoint(store.checkpoint_path(run_id), run.model, {"run_id": run_id, **config})
                checkpoint = store.checkpoint_path(run_id)
            except OSError as error:
                # Disk full or the folder gone: the report took the whole run to compute and fits in a row;
                # keep it, say the checkpoint is missing, rather than fail the run for its model file.
                from unlearn_core.outputs import describe_os_error

                note = f"checkpoint not saved: {describe_os_error(error)}"
                _warn(f"run {run_id}: {note}; the report is recorded")
        store.finish(run_id, report, None if checkpoint is None else str(checkpoint), note=note)
    except (Cancelled, KeyboardInterrupt) as error:
        _discard_checkpoint(store, run_id, checkpoint)
        store.fail(run_id, _error_text(error) if isinstance(error, Cancelled) else "interrupted", status="cancelled")
        raise
    except BaseException as error:
        _discard_checkpoint(store, run_id, checkpoint)
        store.fail(run_id, _error_text(error), status="failed")
        raise
    if checkpoint is not None:
        try:
            store.enforce_checkpoint_quota()
        except (UnlearnError, OSError) as error:  # the run is recorded; a failed prune must not undo that
            _warn(f"the run checkpoint quota could not be applied: {_one_line(error)}")
    return run_id, report, run


def _discard_checkpoint(store: RunStore, run_id: int, checkpoint: Path | None) -> None:
    """A run that did not finish keeps no checkpoint (a failed or cancelled row never has a model beside it)."""
    if checkpoint is not None:
        store._remove_run_checkpoint(run_id)
