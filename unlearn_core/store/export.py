"""Runs exported for spreadsheets and scripts: one flat row per run as CSV, or the full runs as JSON.

Both writers check the output path first (never the store, its side files or
any other file the library manages: :func:`unlearn_core.outputs.check_output_path`)
and write atomically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from unlearn_core.jsonsafe import jsonable
from unlearn_core.outputs import check_output_path, write_output_bytes
from unlearn_core.store.common import METRIC_KEYS, SUMMARY_KEYS


class RunExport:
    """The export part of :class:`~unlearn_core.store.RunStore`."""

    path: Path

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
        check_output_path(path, store_path=self.path)
        write_output_bytes(path, (json.dumps(jsonable(runs), indent=2) + "\n").encode())
