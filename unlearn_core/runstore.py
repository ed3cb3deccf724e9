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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from unlearn_core import paths
from unlearn_core.errors import Cancelled, UnlearnError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000
METRIC_KEYS = ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy")
SUMMARY_KEYS = ("seconds", "retrain_seconds", "rte", "avg_gap")
STATUSES = ("running", "done", "failed", "cancelled")

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
"""


class RunNotFoundError(UnlearnError):
    """No run has the requested id."""


class RunStoreError(UnlearnError):
    """The run store cannot be opened or a request to it is invalid."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._initialise()
            self.reap_stale()
        except sqlite3.DatabaseError as error:
            raise RunStoreError(f"cannot open the run store {self.path}: {error}") from None

    # -- connections -------------------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
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
        conn = self._open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
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

    def finish(self, run_id: int, report: dict, checkpoint_path: str | None = None) -> None:
        """Mark a run ``done`` with its report (see ``pipeline.build_report``) and checkpoint path."""
        unlearned = report.get("unlearned") or {}
        values = [_finite_or_none(report.get(k)) for k in SUMMARY_KEYS]
        values += [_finite_or_none(unlearned.get(k)) for k in METRIC_KEYS]
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE runs SET status = 'done', finished_at = ?, report_json = ?, checkpoint_path = ?, error = NULL, "
                f"{', '.join(f'{k} = ?' for k in SUMMARY_KEYS + METRIC_KEYS)} WHERE id = ?",
                [_now(), _dumps(report), None if checkpoint_path is None else str(checkpoint_path), *values,
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
        "running" forever. A live pid (possibly reused) is left alone.
        """
        with self._read() as conn:
            rows = conn.execute("SELECT id, pid FROM runs WHERE status = 'running'").fetchall()
        stale = [int(row["id"]) for row in rows if row["pid"] is not None and not _pid_alive(int(row["pid"]))]
        for run_id in stale:
            with self._write() as conn:
                conn.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? "
                             "WHERE id = ? AND status = 'running'",
                             ("interrupted: the process running it is gone", _now(), run_id))
        return len(stale)

    # -- reads -------------------------------------------------------------------------------------------------
    @staticmethod
    def _row(row: sqlite3.Row) -> dict:
        out = {key: row[key] for key in row.keys() if not key.endswith("_json")}
        out["params"] = json.loads(row["params_json"]) if row["params_json"] else {}
        out["config"] = json.loads(row["config_json"]) if row["config_json"] else {}
        out["report"] = json.loads(row["report_json"]) if row["report_json"] else None
        return out

    def get(self, run_id: int) -> dict:
        """One run as a dict (``config``, ``params`` and ``report`` decoded); raises if there is none."""
        try:
            run_id = int(run_id)
        except (TypeError, ValueError):
            raise RunNotFoundError(f"run id must be a whole number, got {run_id!r}") from None
        with self._read() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        return self._row(row)

    def list(self, dataset: str | None = None, model: str | None = None, forget: str | None = None,
             method: str | None = None, status: str | None = None, limit: int | None = None,
             tag: str | None = None) -> list[dict]:
        """Runs matching every given filter, newest first."""
        clauses, values = [], []
        for column, value in (("dataset", dataset), ("model", model), ("forget", forget), ("method", method),
                              ("status", status), ("tag", tag)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        query = "SELECT * FROM runs" + (f" WHERE {' AND '.join(clauses)}" if clauses else "") + " ORDER BY id DESC"
        if limit is not None:
            if int(limit) < 0:
                raise RunStoreError(f"limit must be at least 0, got {limit}")
            query += f" LIMIT {int(limit)}"
        with self._read() as conn:
            return [self._row(row) for row in conn.execute(query, values).fetchall()]

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def checkpoint_path(self, run_id: int) -> Path:
        """Where this store keeps a run's checkpoint: ``runs/<id>.pt`` beside the database.

        For the default store that is :func:`run_checkpoint_path`.
        """
        return self.path.parent / "runs" / f"{int(run_id)}.pt"

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
        return row

    def export_csv(self, runs: list[dict], path: str | Path) -> None:
        """Write runs as a flat CSV (atomically)."""
        from unlearn_core.checkpoints import atomic_write_bytes

        rows = [self.flat_row(run) for run in runs]
        columns = list(self.flat_row({}).keys())
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        atomic_write_bytes(Path(path), buffer.getvalue().encode())

    def export_json(self, runs: list[dict], path: str | Path) -> None:
        """Write runs (full dicts, reports included) as a JSON list (atomically)."""
        from unlearn_core.checkpoints import atomic_write_bytes

        atomic_write_bytes(Path(path), (json.dumps(_jsonable(runs), indent=2) + "\n").encode())


def delete_run(run_id: int, store: RunStore | None = None) -> dict:
    """Delete one finished run (done, failed or cancelled) and its checkpoint file; returns the deleted run.

    A run still ``running`` is refused: its worker would fail to record it.
    The row goes first, in one transaction, so a crash between the two steps
    leaves at worst an orphan file, never a row pointing at nothing. Only
    checkpoints inside the store's own ``runs/`` folder are removed.
    """
    store = store or RunStore()
    run = store.get(run_id)
    if run["status"] == "running":
        raise RunStoreError(f"run {run_id} is still running; cancel it before deleting it")
    with store._write() as conn:
        conn.execute("DELETE FROM runs WHERE id = ? AND status != 'running'", (int(run_id),))
    own = store.checkpoint_path(run_id)
    recorded = Path(run["checkpoint_path"]) if run.get("checkpoint_path") else None
    # Only files in the store's own runs/ folder are removed: a path in the database is never trusted blindly.
    for path in {own, recorded}:
        if path is not None and path.resolve().parent == own.resolve().parent:
            path.unlink(missing_ok=True)
    return run


def _error_text(error: BaseException) -> str:
    if isinstance(error, UnlearnError):
        return str(error) or type(error).__name__
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def run_and_record(setup, method: str, params: dict | None = None, progress=None, cancel=None,
                   store: RunStore | None = None, save_checkpoint: bool = True, tag: str | None = None,
                   extra_config: dict | None = None):
    """Run one method on a prepared setup and record it; returns ``(run_id, report, method_run)``.

    start -> ``pipeline.run_method`` -> ``pipeline.build_report`` -> the
    unlearned checkpoint saved atomically -> finish. A cancelled run is
    recorded as ``cancelled`` and any other error as ``failed`` (with its
    message); both re-raise. Bad parameters raise before anything is recorded.
    """
    from unlearn_core import checkpoints
    from unlearn_core.methods import get_method
    from unlearn_core.pipeline import build_report, run_method
    from unlearn_core.progress import ProgressEvent

    store = store or RunStore()
    method_cls = get_method(method)
    resolved = method_cls.resolve_params(params)
    config = {"dataset": setup.bundle.name, "model": setup.model_name, "forget": str(setup.split.spec),
              "method": method_cls.name, "params": resolved, "seed": setup.seed, "device": str(setup.device),
              "tag": tag, "recipe": setup.recipe.as_dict(), "original_checkpoint": setup.original.key,
              "retrained_checkpoint": setup.retrained.key if setup.retrained is not None else None,
              "n_forget": int(len(setup.split.forget_idx))}
    config.update(extra_config or {})
    run_id = store.start(config)
    try:
        run = run_method(setup, method_cls.name, resolved, progress, cancel)
        if progress is not None:  # its own stage, so a progress bar does not sit still at 100 % meanwhile
            progress(ProgressEvent(stage="evaluate", message="metrics of the unlearned model"))
        report = build_report(setup, run)
        checkpoint = None
        if save_checkpoint:
            checkpoint = store.checkpoint_path(run_id)
            checkpoints.save_checkpoint(checkpoint, run.model, {"run_id": run_id, **config})
        store.finish(run_id, report, None if checkpoint is None else str(checkpoint))
    except (Cancelled, KeyboardInterrupt) as error:
        store.fail(run_id, _error_text(error) if isinstance(error, Cancelled) else "interrupted", status="cancelled")
        raise
    except BaseException as error:
        store.fail(run_id, _error_text(error), status="failed")
        raise
    return run_id, report, run
