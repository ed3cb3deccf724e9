"""Uncertainty over seeds for the Results page: the mean ± 95 % interval of runs repeated over seeds, and the
spread of a retrained ensemble per class. Both aggregate with :func:`unlearn_core.sweeps.summarize`, the sweeps'
own statistics, so a table and a sweep report say the same about the same runs.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from unlearn_core.tables.runs import as_report


def seed_groups(runs: list[dict], metrics: list[str]) -> pd.DataFrame:
    """Finished runs grouped by method and parameters: per metric the mean and the 95 % t interval's half-width.

    Only groups of two or more runs (several seeds) are returned: a single run keeps its own row in the main
    table, and "± –" for it would say nothing. Columns: ``method``, ``params`` (JSON), ``n``, ``seeds``,
    ``run_ids``, then ``METRIC`` (mean) and ``METRIC±`` (half-width) per metric; ``avg_gap`` comes from the
    report, the others from its ``unlearned`` section.
    """
    from unlearn_core.sweeps import summarize  # the sweeps' statistics; imported on use (the sweeps are large)

    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        if run.get("status") != "done" or not run.get("report"):
            continue
        key = (run["method"], json.dumps(run.get("params") or {}, sort_keys=True))
        groups.setdefault(key, []).append(run)
    rows = []
    for (method, params), members in groups.items():
        if len({r.get("seed") for r in members}) < 2:
            continue
        row = {"method": method, "params": params, "n": len(members),
               "seeds": sorted({int(r.get("seed") or 0) for r in members}),
               "run_ids": [int(r["id"]) for r in members]}
        for metric in metrics:
            reports = [as_report(r["report"]) for r in members]
            values = [getattr(report, metric) if metric in ("avg_gap", "seconds", "rte") else
                      report.unlearned.get(metric) for report in reports]
            stats = summarize([v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)])
            row[metric] = stats["mean"] if stats["mean"] is not None else float("nan")
            row[f"{metric}±"] = (stats["ci_high"] - stats["mean"]) if stats["ci_high"] is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def interval_text(mean: float, half: float, decimals: int = 2) -> str:
    """``"97.31 ± 0.42"``; "–" for an undefined mean; the mean alone when the interval is undefined."""
    if mean is None or not math.isfinite(float(mean)):
        return "–"
    if half is None or not math.isfinite(float(half)):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {half:.{decimals}f}"


def ensemble_band(runs: list[dict], original_per_class) -> dict | None:
    """The spread of a retrained ensemble per class, as change vs ``original_per_class`` (points).

    The ensemble is every finished ``retrain`` run of the choice (a sweep's reference models, one per seed).
    Returns ``{"k", "mean", "low", "high"}`` with low/high = mean ∓ 2 standard deviations (the band a
    sweep calls "inside the ensemble's spread"), or None with fewer than two models.
    """
    members = [r for r in runs if r.get("status") == "done" and r.get("method") == "retrain" and r.get("report")]
    seen, rows = set(), []
    for run in members:
        if run.get("seed") in seen:
            continue  # one model per seed: the same key run twice is the same model
        per_class = as_report(run["report"]).unlearned.per_class_test
        if not per_class or len(per_class) != len(original_per_class):
            continue
        seen.add(run.get("seed"))
        rows.append(np.asarray(per_class, dtype=float) - np.asarray(original_per_class, dtype=float))
    if len(rows) < 2:
        return None
    from unlearn_core.sweeps import summarize

    values = np.vstack(rows)
    stats = [summarize(list(column)) for column in values.T]
    mean = np.array([s["mean"] for s in stats], dtype=float)
    std = np.array([s["std"] for s in stats], dtype=float)
    return {"k": len(rows), "mean": mean, "low": mean - 2 * std, "high": mean + 2 * std}
