"""The shared-server access layer: the run store as one browser session may see it, deny by default."""

from __future__ import annotations

import warnings

from unlearn_core.report import Report
from unlearn_core.store import RunNotFoundError


class RunView:
    """The run store as one browser session may see it.

    Personal mode (``shared=False``): every run, CLI runs included. Shared
    mode: only the runs this session started (``config["owner"]``), so no
    visitor can list or download another's. In both modes a run of an uploaded
    original is shown only with that upload, and a row whose stored JSON cannot
    be read is skipped (listed in ``skipped``) instead of breaking the page.

    Deny by default: only the store operations named in :data:`PASS_THROUGH`
    and :data:`RUN_WRITES` reach the :class:`RunStore`; any other attribute
    raises ``AttributeError``. A write that names a run (:data:`RUN_WRITES`)
    goes through only for a run this session owns (shared mode) and otherwise
    answers as for a run that does not exist.
    """

    FILTERS = ("dataset", "model", "forget", "method", "status", "tag")
    # Store operations that name no other session's run: the path, the writable check, the CSV export of runs
    # this view listed, the checkpoint quota, and a sweep's links (its tag is visible only to its owner).
    PASS_THROUGH = ("path", "require_writable", "export_csv", "enforce_checkpoint_quota", "link_sweep_run",
                    "unlink_sweep_runs", "sweep_runs")
    # Store operations whose first argument is a run id: allowed on the session's own runs only.
    RUN_WRITES = ("finish", "fail", "checkpoint_path", "remove_run_checkpoint", "save_run_outputs")

    def __init__(self, store, owner: str, shared: bool, original: str = ""):
        self._store = store
        self.owner = owner
        self.shared = shared
        self.original = original
        self.skipped: list[int] = []

    def __getattr__(self, name):
        if name.startswith("__") or name not in self.PASS_THROUGH + self.RUN_WRITES:
            raise AttributeError(f"{type(self).__name__} does not expose the run store's {name!r}")
        operation = getattr(self._store, name)
        if name in self.PASS_THROUGH:
            return operation

        def on_own_run(run_id, *args, **kwargs):
            self._require_owner(run_id)
            return operation(run_id, *args, **kwargs)

        return on_own_run

    def _require_owner(self, run_id: int) -> None:
        """Raise :class:`RunNotFoundError` unless this session may write run ``run_id`` (any run when personal)."""
        if not self.shared:
            return
        run = self._store.get(run_id)
        if (run.get("config") or {}).get("owner") != self.owner:
            raise RunNotFoundError(f"no run with id {run_id}")

    def start(self, config: dict) -> int:
        return self._store.start({**config, "owner": self.owner})

    def _visible(self, run: dict) -> bool:
        config = run.get("config") or {}
        if self.shared and config.get("owner") != self.owner:
            return False
        return (config.get("original_upload") or "") == self.original

    def list(self, limit: int | None = None, **filters) -> list[dict]:
        self.skipped = []
        try:
            with warnings.catch_warnings():
                # The store warns about rows it cannot decode; this view lists them in ``skipped`` instead.
                warnings.simplefilter("ignore")
                runs = self._store.list(**filters)
        except (ValueError, TypeError, KeyError):
            runs = self._list_row_by_row(filters)
        visible = []
        for run in runs:
            if run.get("read_error"):
                self.skipped.append(int(run["id"]))  # the store could not decode this row (it says so, not raises)
            elif run.get("report") is not None and not isinstance(run["report"], (dict, Report)):
                self.skipped.append(int(run["id"]))  # valid JSON, but not a report: the pages would crash on it
            elif self._visible(run):
                visible.append(run)
        return visible[:limit] if limit is not None else visible

    def _list_row_by_row(self, filters: dict) -> list[dict]:
        """The slow path when some row does not decode: read ids, then each run alone, skipping bad ones."""
        import sqlite3

        clauses = [(k, v) for k, v in filters.items() if k in self.FILTERS and v is not None]
        query = "SELECT id FROM runs" + (" WHERE " + " AND ".join(f"{k} = ?" for k, _ in clauses)
                                         if clauses else "") + " ORDER BY id DESC"
        from pathlib import Path

        conn = sqlite3.connect(Path(self._store.path).resolve().as_uri() + "?mode=ro", uri=True, timeout=60)
        try:
            ids = [int(row[0]) for row in conn.execute(query, [v for _, v in clauses]).fetchall()]
        finally:
            conn.close()
        runs = []
        for run_id in ids:
            try:
                runs.append(self._store.get(run_id))
            except (ValueError, TypeError, KeyError):
                self.skipped.append(run_id)
        return runs

    def csv_bytes(self, runs: list[dict]) -> bytes:
        """The run store's own CSV export of ``runs`` (runs this view listed), as bytes for a download."""
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "runs.csv"
            self._store.export_csv(runs, path)
            return path.read_bytes()

    # Sweeps carry their owner in the stored spec, as runs do in their config, so a shared server lists to each
    # session only the sweeps it started (and run_sweep's RunView.start marks every run of it the same way).
    def save_sweep(self, tag: str, kind: str, spec: dict) -> None:
        self._store.save_sweep(tag, kind, {**spec, "owner": self.owner})

    def sweep_visible(self, sweep: dict | None) -> bool:
        return sweep is not None and (not self.shared or (sweep.get("spec") or {}).get("owner") == self.owner)

    def list_sweeps(self) -> list[dict]:
        return [s for s in self._store.list_sweeps() if self.sweep_visible(s)]

    def get_sweep(self, tag: str) -> dict | None:
        sweep = self._store.get_sweep(tag)
        return sweep if self.sweep_visible(sweep) else None

    def find_keys(self, keys: list[str]) -> dict[str, dict]:
        """Stored runs a sweep may reuse: on a shared server only this session's (another's stay invisible)."""
        found = self._store.find_keys(keys)
        if not self.shared:
            return found
        mine = {}
        for key, entry in found.items():
            try:
                run = self._store.get(entry["id"])
            except Exception:  # noqa: BLE001 - a row that cannot be read is not reused; the sweep runs it again
                continue
            if (run.get("config") or {}).get("owner") == self.owner:
                mine[key] = entry
        return mine

    def get(self, run_id: int) -> dict:
        run = self._store.get(run_id)
        if not self._visible(run):
            raise RunNotFoundError(f"no run with id {run_id}")  # the same answer as for a run that does not exist
        return run

    def owned_checkpoint(self, run_id: int):
        """The checkpoint file of one of this view's runs that the store itself wrote, else None."""
        return self._store.owned_checkpoint(self.get(run_id))

    def delete(self, run_id: int) -> dict:
        """Delete one of this view's runs (``store.delete_run``); another session's run answers as missing."""
        from unlearn_core.store import delete_run

        self.get(run_id)
        return delete_run(run_id, self._store)

