"""The run store: every unlearning run recorded in one SQLite database.

Each run keeps its configuration (data set, model, forget set, method,
resolved parameters, seed, device), the code version, timings, every metric of
the report (indexed columns for the headline ones, the whole report as JSON,
per-class accuracies included) and the path of its unlearned checkpoint.

Every write is one short transaction (:mod:`unlearn_core.store.schema`), so a
crash in the middle of a run leaves every earlier run untouched (the crashed
run stays ``running`` until a store opened later finds its process gone and
marks it failed). Rows whose JSON cannot be decoded come back with
``report=None`` and a ``read_error`` text, and rows on a damaged page are
skipped, each with a :class:`RunStoreWarning`. Recording a method run
(start, run, evaluate, save, finish) is :func:`unlearn_core.record.run_and_record`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from unlearn_core import paths
from unlearn_core.jsonsafe import dumps, finite_or_none, jsonable, one_line
from unlearn_core.parsing import ascii_int
from unlearn_core.report import Report
from unlearn_core.store.common import (MAX_ROW_ID, METRIC_KEYS, SUMMARY_KEYS, RunNotFoundError, RunStoreError,
                                       code_version, now, run_id_from_text, warn)
from unlearn_core.store.export import RunExport
from unlearn_core.store.files import CheckpointFiles
from unlearn_core.store.schema import StoreFile, is_read_only_error
from unlearn_core.store.sweeps import SweepTables


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_store_path() -> Path:
    return paths.data_dir() / "runs.sqlite"


class RunStore(StoreFile, CheckpointFiles, SweepTables, RunExport):
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
            if self.path.is_file() and is_read_only_error(error):
                # os.access can say yes where the file system says no (read-only mounts seen through some
                # layers, ACLs): fall back on what sqlite itself found.
                self._open_read_only()
                return
            raise RunStoreError(f"cannot open the run store {str(self.path)!r}: {one_line(error)}") from None
        self.sweep_stale_temp_files()

    # -- writes ------------------------------------------------------------------------------------------------
    def start(self, config: dict) -> int:
        """Record a new run as ``running``; returns its id.

        ``config`` holds ``dataset``, ``model``, ``forget``, ``method``,
        ``params`` (dict), ``seed`` and ``device``; any other keys (``tag``,
        recipe, checkpoint keys) are kept in the stored config.
        """
        if not isinstance(config, dict):
            raise RunStoreError("a run's config must be a dict")
        config = jsonable(config)
        params = config.get("params") or {}
        seed = config.get("seed")
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (status, dataset, model, forget, method, seed, device, tag, params_json, "
                "config_json, code_version, pid, started_at) VALUES ('running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (config.get("dataset"), config.get("model"), config.get("forget"), config.get("method"),
                 None if seed is None else int(seed), config.get("device"), config.get("tag"),
                 dumps(params), dumps(config), code_version(), os.getpid(), now()))
            return int(cursor.lastrowid)

    def finish(self, run_id: int, report: Report | dict, checkpoint_path: str | None = None,
               note: str | None = None) -> None:
        """Mark a run ``done`` with its report (a :class:`~unlearn_core.report.Report` or its ``to_dict()``
        form, see ``pipeline.build_report``) and checkpoint path.

        ``note`` goes into the ``error`` column of a finished run (e.g. why its checkpoint is missing).
        """
        if isinstance(report, Report):
            report = report.to_dict()
        unlearned = report.get("unlearned") or {}
        values = [finite_or_none(report.get(k)) for k in SUMMARY_KEYS]
        values += [finite_or_none(unlearned.get(k)) for k in METRIC_KEYS]
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE runs SET status = 'done', finished_at = ?, report_json = ?, checkpoint_path = ?, error = ?, "
                f"{', '.join(f'{k} = ?' for k in SUMMARY_KEYS + METRIC_KEYS)} WHERE id = ?",
                [now(), dumps(report), None if checkpoint_path is None else str(checkpoint_path), note, *values,
                 int(run_id)])
            if cursor.rowcount == 0:
                raise RunNotFoundError(f"no run with id {run_id}")

    def fail(self, run_id: int, error: str, status: str = "failed") -> None:
        """Mark a run ``failed`` or ``cancelled`` with its error message."""
        if status not in ("failed", "cancelled"):
            raise RunStoreError(f"a run can fail as 'failed' or 'cancelled', not {status!r}")
        with self._write() as conn:
            cursor = conn.execute("UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                                  (status, str(error), now(), int(run_id)))
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
            warn(f"while looking for interrupted runs: {problem}")
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
                                      ("interrupted: the process running it is gone", now(), run_id)).rowcount
            if reaped:
                self.remove_run_checkpoint(run_id)
        return len(stale)

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
            damage = one_line(error)
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
            raise RunStoreError(f"run {run_id} cannot be read from {str(self.path)!r}: {one_line(error)}") from None
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        run = self._row(row)
        if run.get("read_error"):
            warn(f"run {run_id}: {run['read_error']}; shown without it")
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
            raise RunStoreError(f"cannot read the run store {str(self.path)!r}: {one_line(error)}") from None
        runs = [self._row(row) for row in rows]
        found += [f"run {run['id']}: {run['read_error']}; shown without it" for run in runs if run.get("read_error")]
        for problem in found:
            if problems is not None:
                problems.append(problem)
            else:
                warn(problem)
        return runs

    def list_checked(self, **filters) -> tuple[list[dict], list[str]]:
        """:meth:`list` that returns its problems (one line each) instead of warning: ``(runs, problems)``."""
        problems: list[str] = []
        return self.list(**filters, problems=problems), problems

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


def delete_run(run_id: int, store: RunStore | None = None) -> dict:
    """Delete one finished run (done, failed or cancelled) and its checkpoint file; returns the deleted run.

    A run still ``running`` is refused (its worker would fail to record it), and so is a pinned run (a pin keeps a
    run through the checkpoint quota; deleting it needs an unpin first).
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
    if run.get("pinned"):
        raise RunStoreError(f"run {run_id} is pinned; unpin it first (python -m unlearn_core runs unpin {run_id})")
    with store._write() as conn:
        conn.execute("DELETE FROM runs WHERE id = ? AND status != 'running'", (run_id,))
    store.remove_run_checkpoint(run_id)
    return run
