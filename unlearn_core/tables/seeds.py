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
    report, ``gap_M`` is each run's ``|unlearned M − retrained M|`` (its own seed's reference), the others come
    from its ``unlearned`` section.
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
            values = [_run_value(report, metric) for report in reports]
            stats = summarize([v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)])
            row[metric] = stats["mean"] if stats["mean"] is not None else float("nan")
            row[f"{metric}±"] = (stats["ci_high"] - stats["mean"]) if stats["ci_high"] is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _run_value(report, metric: str):
    if metric in ("avg_gap", "seconds", "rte"):
        return getattr(report, metric)
    if metric.startswith("gap_"):
        key = metric[len("gap_"):]
        value, target = report.unlearned.get(key), (report.retrained.get(key) if report.retrained else None)
        return None if value is None or target is None else abs(float(value) - float(target))
    return report.unlearned.get(metric)


def best_over_seeds(groups: pd.DataFrame, columns) -> dict[str, set[int]]:
    """Per column (a ``gap_M`` or ``avg_gap``, lower is better), the row positions of ``groups``
    (:func:`seed_groups`) that are best: the best mean and every group whose 95 % interval overlaps its
    (:func:`.noise.separated_best`); absent when all overlap."""
    from unlearn_core.tables.noise import separated_best

    best = {}
    frame = groups.reset_index(drop=True)
    for column in columns:
        if column in frame and f"{column}±" in frame:
            tied = separated_best(frame[column], frame[f"{column}±"])
            if tied is not None:
                best[column] = set(int(i) for i in tied.index)
    return best


def missing_seed_runs(runs: list[dict], count: int = 3) -> list[tuple[str, dict, int]]:
    """What "run ``count`` seeds" queues: for every method-and-parameters group of finished runs that has one
    seed ``s``, the seeds ``s+1 .. s+count-1`` it lacks, as ``(method, params, seed)``. References (the original,
    the retrained model, a sweep's ``retrain`` runs) and runs of an uploaded original are not repeated."""
    from unlearn_core.tables.runs import NOT_CANDIDATES

    groups: dict[tuple, tuple[dict, set]] = {}
    for run in runs:
        if run.get("status") != "done" or run.get("method") in NOT_CANDIDATES:
            continue
        if (run.get("config") or {}).get("original_upload"):
            continue
        key = (run["method"], json.dumps(run.get("params") or {}, sort_keys=True))
        groups.setdefault(key, (run.get("params") or {}, set()))[1].add(int(run.get("seed") or 0))
    missing = []
    for (method, _), (params, seeds) in groups.items():
        if len(seeds) == 1:
            first = next(iter(seeds))
            missing += [(method, params, seed) for seed in range(first + 1, first + count)]
    return missing


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
