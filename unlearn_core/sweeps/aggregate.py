"""A sweep's results rebuilt from the store alone: per cell and metric the mean, standard deviation and 95 %
interval over seeds, the gap to the reference ensemble and whether the mean lies inside its spread, and the
ensemble verdicts against the retrained models (forget quality as the NeurIPS 2023 competition's released
``metric.py`` computes it, the competition's final score, KLoM P95 and the U-LiRA attack).
"""

from __future__ import annotations

import json
import math

from unlearn_core.errors import UnlearnError
# The metric table: MODEL_METRICS (a report's ``unlearned`` section) are compared with the reference ensemble, and
# any other number that section gains is aggregated and compared too, after them; RUN_METRICS are about the run
# rather than the model: aggregated, not compared with the ensemble.
from unlearn_core.metrics import MODEL_METRICS, RUN_METRICS
from unlearn_core.sweeps.plan import Cell
from unlearn_core.sweeps.spec import SweepError


#: What a report says about a run beyond its numbers (the bench marks rows with these).
REPORT_FLAGS = ("in_scope", "in_scope_reason", "rte_comparable", "rte_not_comparable_reason")


# -- aggregation ---------------------------------------------------------------------------------------------------
def summarize(values: list[float]) -> dict:
    """Mean, sample standard deviation and a two-sided 95 % t interval of the mean (None where undefined)."""
    clean = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(clean)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = sum(clean) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    from scipy.stats import t

    std = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: Evidence numbers (docs/EVIDENCE.md) a run's report may carry, per model: (section, key) -> metric suffix.
EVIDENCE_METRICS = (("probe", "probe_forget"), ("probe", "probe_retain"), ("probe", "knn_forget"),
                    ("relearn", "relearn_steps"))


def _run_metrics(report: dict) -> dict:
    """Every scalar of the report's ``unlearned`` section, plus the run's Avg. Gap, seconds and speed-up.

    A run with evidence adds ``ev_<key>`` for the unlearned model and
    ``ev_<key>_original`` / ``ev_<key>_retrained`` for the two references
    (probe accuracies; relearn steps, ``None`` when capped).
    """
    unlearned = report.get("unlearned") or {}
    out = {k: unlearned.get(k) for k in MODEL_METRICS}
    out.update({k: v for k, v in unlearned.items() if k not in out and (v is None or _is_number(v))})
    out.update({k: report.get(k) for k in ("avg_gap", "seconds", "rte")})
    evidence = report.get("evidence") or {}
    for section, key in EVIDENCE_METRICS:
        for model, suffix in (("unlearned", ""), ("original", "_original"), ("retrained", "_retrained")):
            value = ((evidence.get(section) or {}).get(model) or {}).get(key)
            if _is_number(value):
                out[f"ev_{key}{suffix}"] = value
    return out


def _metric_order(records: list[dict]) -> list[str]:
    """The declared metrics first, then any other number the runs carry, in first-seen order."""
    names = list(MODEL_METRICS)
    for record in records:
        names.extend(k for k in record["metrics"] if k not in names and k not in RUN_METRICS)
    return names + list(RUN_METRICS)


def _cell_identity(run: dict) -> tuple:
    return (run["dataset"], run["model"], run["forget"], run["method"], json.dumps(run["params"], sort_keys=True))


def sweep_result(store, tag: str) -> dict:
    """A sweep's cells, runs and aggregates, rebuilt from the run store alone.

    ``forgets`` holds, per forget set, the reference ensemble (every metric's
    mean, std, min and max over its retrained models) and the original model
    over seeds. Each cell holds its runs (id, seed, status, error, metrics) and
    per metric ``summary`` (see :func:`summarize`) plus ``gap`` (cell mean minus
    ensemble mean) and ``inside`` (the mean lies within the ensemble mean ± 2
    ensemble standard deviations; None with fewer than two retrained models).
    Runs are grouped per cell and per forget set, so a score over K unlearned
    and K retrained models per forget set can be computed from ``run_ids``.

    Where the runs kept their verdict outputs (at least 3 seeds and 3 retrained
    models), each cell also holds the ensemble verdicts of :func:`_verdicts`:
    ``forget_quality``, ``competition_score``, ``klom_p95``, ``ulira`` and
    ``verdicts`` (protocol, models used, seconds, a note); None where missing.
    The result names the sweep's ``protocol``.
    """
    from unlearn_core.methods import get_method

    sweep = store.get_sweep(tag)
    if sweep is None:
        raise SweepError(f"no sweep is recorded with tag {tag!r}")
    spec = sweep["spec"]
    protocol = spec.get("protocol") or "seeds"
    runs = store.sweep_runs(tag)
    forgets: dict[str, dict] = {f: {"forget": f, "references": [], "originals": {}} for f in spec.get("forgets", [])}
    groups: dict[tuple, dict] = {}
    all_records: list[dict] = []
    for run in runs:
        entry = forgets.setdefault(run["forget"], {"forget": run["forget"], "references": [], "originals": {}})
        report = run["report"] or {}
        if report.get("original") and run["seed"] not in entry["originals"]:
            entry["originals"][run["seed"]] = report["original"]
        record = {"run_id": run["id"], "seed": run["seed"], "status": run["status"], "error": run["error"],
                  "key": run["run_key"], "node_id": (run.get("config") or {}).get("node_id"),
                  "metrics": _run_metrics(report) if report else {},
                  "flags": {k: report.get(k) for k in REPORT_FLAGS if k in report},
                  # Read for the verdicts below and dropped before returning (hundreds of numbers per run).
                  "_outputs": (report.get("verdict_outputs"), report.get("verdict_split_key"))}
        all_records.append(record)
        if run["role"] == "reference":
            entry["references"].append(record)
        # A "retrain" cell asked for in --methods is the reference at the sweep's seeds (same keys, run once).
        as_cell = run["method"] == "retrain" and "retrain" in spec.get("methods", []) and \
            run["seed"] in spec.get("seeds", [])
        if run["role"] == "run" or as_cell:
            identity = _cell_identity(run)
            group = groups.setdefault(identity, {"dataset": run["dataset"], "model": run["model"],
                                                 "forget": run["forget"], "method": run["method"],
                                                 "params": run["params"], "runs": []})
            group["runs"].append(record)
    metrics = _metric_order(all_records)
    forget_out = []
    for name, entry in forgets.items():
        done = [r for r in entry["references"] if r["status"] == "done"]
        reference = {}
        for metric in metrics:
            values = [r["metrics"].get(metric) for r in done]
            stats = summarize(values)
            clean = [v for v in values if v is not None]
            stats.update({"min": min(clean) if clean else None, "max": max(clean) if clean else None})
            reference[metric] = stats
        seeds = sorted(entry["originals"])
        original = {metric: summarize([entry["originals"][s].get(metric) for s in seeds])
                    for metric in metrics if metric not in RUN_METRICS or metric == "avg_gap"}
        per_seed = {"original": {s: entry["originals"][s] for s in seeds},
                    "reference": {r["seed"]: r["metrics"] for r in done}}
        forget_out.append({"forget": name, "reference": {"seeds": sorted(r["seed"] for r in done),
                                                         "run_ids": [r["run_id"] for r in done],
                                                         "failed": [r for r in entry["references"]
                                                                    if r["status"] != "done"],
                                                         "metrics": reference},
                           "original": {"seeds": seeds, "metrics": original},
                           "per_seed": per_seed})
    references = {f["forget"]: f["reference"]["metrics"] for f in forget_out}
    method_order = {m: i for i, m in enumerate(spec.get("methods", []))}
    forget_order = {f: i for i, f in enumerate(spec.get("forgets", []))}
    cells_out = []
    for identity, group in sorted(groups.items(), key=lambda item: (forget_order.get(item[1]["forget"], 99),
                                                                      method_order.get(item[1]["method"], 99),
                                                                      item[0][4])):
        group["runs"].sort(key=lambda r: r["seed"])
        done = [r for r in group["runs"] if r["status"] == "done"]
        summary = {}
        for metric in metrics:
            stats = summarize([r["metrics"].get(metric) for r in done])
            ref = references.get(group["forget"], {}).get(metric) or {}
            gap = inside = None
            if metric not in RUN_METRICS and stats["mean"] is not None and ref.get("mean") is not None:
                gap = stats["mean"] - ref["mean"]
                if ref.get("n", 0) >= 2:
                    inside = abs(gap) <= 2 * ref["std"] + 1e-9
            stats.update({"gap": gap, "inside": inside})
            summary[metric] = stats
        cell = Cell(group["dataset"], group["model"], group["forget"], group["method"],
                    tuple(sorted(group["params"].items())))
        try:
            title = get_method(group["method"]).title
        except UnlearnError:
            title = group["method"]
        cells_out.append({"id": cell.cell_id(), **group, "title": title, "seeds": [r["seed"] for r in done],
                          "failed": len(group["runs"]) - len(done), "summary": summary,
                          **_verdicts(done, forgets.get(group["forget"], {}), protocol)})
    for record in all_records:
        record.pop("_outputs", None)
    return {"tag": tag, "kind": sweep["kind"], "spec": spec, "protocol": protocol, "metrics": metrics,
            "dataset": spec.get("dataset"),
            "model": spec.get("model"), "seeds": spec.get("seeds"), "retrains": spec.get("retrains"),
            "device": spec.get("device"), "created_at": sweep["created_at"], "forgets": forget_out,
            "cells": cells_out}


#: The cell keys :func:`_verdicts` fills (None where a cell has no verdicts).
VERDICT_KEYS = ("forget_quality", "competition_score", "klom_p95", "ulira", "verdicts")


def _verdicts(cell_runs: list[dict], forget_entry: dict, protocol: str) -> dict:
    """The ensemble verdicts of one cell against its forget set's retrained models.

    :func:`~unlearn_core.evidence.ensemble_verdicts` on the runs' stored
    :func:`~unlearn_core.evidence.run_outputs`: ``forget_quality`` (the
    competition's released score on the forget set), ``klom_p95``
    (forget / retain / validation) and ``ulira`` (``auc``, ``tpr_at_1fpr``,
    ``tpr_at_5fpr`` on the forget set, and the same under ``retain``).
    ``competition_score`` is :func:`~unlearn_core.evidence.competition_score`:
    the forget quality times the ratios of the mean RA and the mean TA of the
    cell's runs to the retrained models'. ``verdicts`` says how they were
    made (``protocol``, ``k_unlearned``, ``k_retrained``, ``k_used``,
    ``seconds``) or, in ``note``, why there are none: a random forget set
    drawn anew per seed pairs no sample across models. The ``retrain`` cell
    is scored against the reference models it shares, so its verdicts are
    what identical families give, not an independent estimate (the note says so).
    """
    from unlearn_core.evidence import competition_score, ensemble_verdicts

    out: dict = {key: None for key in VERDICT_KEYS}
    references = [r for r in forget_entry.get("references", []) if r["status"] == "done"]
    unlearned = [r for r in cell_runs if (r.get("_outputs") or (None,))[0] is not None]
    retrained = [r for r in references if (r.get("_outputs") or (None,))[0] is not None]
    if not unlearned or not retrained:
        return out
    info = {"protocol": protocol, "k_unlearned": len(unlearned), "k_retrained": len(retrained), "k_used": None,
            "seconds": None, "note": None}
    out["verdicts"] = info
    if len({r["_outputs"][1] for r in unlearned + retrained}) != 1:
        info["note"] = "the forget set differs between seeds (random forgetting), so no sample pairs across models"
        return out
    try:
        result = ensemble_verdicts([r["_outputs"][0] for r in unlearned], [r["_outputs"][0] for r in retrained],
                                   protocol=protocol)
    except UnlearnError as error:  # too few models, or a diverged model's outputs are not finite
        info["note"] = str(error)
        return out
    data = result.to_dict()
    info.update({"k_used": data["k_used"], "seconds": data["seconds"]})
    if {r["run_id"] for r in unlearned} & {r["run_id"] for r in retrained}:
        info["note"] = "scored against the retrained models it shares (identical families), not independently"
    out.update({"forget_quality": data["forget_quality"], "klom_p95": data["klom_p95"],
                "ulira": {k: data["ulira"].get(k) for k in ("auc", "tpr_at_1fpr", "tpr_at_5fpr", "retain")}})
    accuracies = [[r["metrics"].get(m) for r in runs] for m in ("RA", "TA") for runs in (unlearned, retrained)]
    if data["forget_quality"] is not None and all(v is not None for values in accuracies for v in values):
        try:
            out["competition_score"] = competition_score(data["forget_quality"], *accuracies).to_dict()
        except UnlearnError as error:
            info["note"] = str(error)
    return out


def cell_verdict_details(store, tag: str, cell_id: str) -> dict | None:
    """Per-sample views of one sweep cell's verdicts: KLoM per sample and the U-LiRA ROC, from the store.

    ``{"klom": {split: [values]}, "roc": {split: {"fpr", "tpr"}}, "k_used", "k_unlearned", "k_retrained",
    "protocol"}`` for ``forget``, ``retain`` (and ``validation`` for KLoM), from the cell's runs' and the
    reference models' stored ``verdict_outputs`` (:func:`~unlearn_core.evidence.ensemble_verdicts` with
    ``per_sample``, :func:`~unlearn_core.evidence.ulira_scores` and :func:`~unlearn_core.evidence.roc_curve`
    on the first ``k_used`` models of each family, as the cell's numbers use them). None when the cell has
    no verdicts (too few models, another forget set per seed).
    """
    import numpy as np

    from unlearn_core.evidence import RunOutputs, ensemble_verdicts, roc_curve, ulira_scores

    sweep = store.get_sweep(tag)
    if sweep is None:
        raise SweepError(f"no sweep is recorded with tag {tag!r}")
    runs = [r for r in store.sweep_runs(tag) if r["status"] == "done" and (r["report"] or {}).get("verdict_outputs")]
    cell = [r for r in runs if r["role"] == "run" and Cell(r["dataset"], r["model"], r["forget"], r["method"],
                                                             tuple(sorted(r["params"].items()))).cell_id() == cell_id]
    if not cell:
        return None
    forget = cell[0]["forget"]
    references = [r for r in runs if r["role"] == "reference" and r["forget"] == forget]
    keys = {r["report"].get("verdict_split_key") for r in cell + references}
    if len(keys) != 1:
        return None
    unlearned = [RunOutputs.from_dict(r["report"]["verdict_outputs"]) for r in sorted(cell, key=lambda r: r["seed"])]
    retrained = [RunOutputs.from_dict(r["report"]["verdict_outputs"]) for r in references]
    try:
        verdicts = ensemble_verdicts(unlearned, retrained, (sweep["spec"] or {}).get("protocol") or "seeds")
    except UnlearnError:
        return None
    k = verdicts.k_used
    roc = {}
    for split in ("forget", "retain"):
        if split in unlearned[0].phi and len(unlearned[0].phi[split]):
            positives, negatives = ulira_scores(np.stack([u.phi[split] for u in unlearned[:k]]),
                                                np.stack([r.phi[split] for r in retrained[:k]]))
            roc[split] = {**roc_curve(positives, negatives), **verdicts.ulira.per_split[split]}
    return {"klom": verdicts.klom.to_dict(per_sample=True)["per_sample"], "klom_p95": verdicts.klom.p95, "roc": roc,
            "k_used": k, "k_unlearned": verdicts.k_unlearned, "k_retrained": verdicts.k_retrained,
            "protocol": verdicts.protocol, "forget_quality": verdicts.forget_quality.score}
