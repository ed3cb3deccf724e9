"""The run store's sweep tables: a sweep is a tag, its spec, and links from run keys to runs.

A run is linked only once it is finished or failed, so a run whose driver died
half-way is never taken as done on a resume (see :mod:`unlearn_core.sweeps`).
"""

from __future__ import annotations

import json
from pathlib import Path

from unlearn_core.jsonsafe import dumps
from unlearn_core.store.common import now


class SweepTables:
    """The ``sweeps`` and ``sweep_runs`` part of :class:`~unlearn_core.store.RunStore`."""

    path: Path

    def save_sweep(self, tag: str, kind: str, spec: dict) -> None:
        """Create the sweep ``tag`` or refresh its spec (a re-run of a sweep may widen it)."""
        stamp = now()
        with self._write() as conn:
            conn.execute("INSERT INTO sweeps (tag, kind, spec_json, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT(tag) DO UPDATE SET kind = excluded.kind, spec_json = excluded.spec_json, "
                         "updated_at = excluded.updated_at", (tag, kind, dumps(spec), stamp, stamp))

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
