"""A sweep's result as markdown tables, flat rows, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone

from unlearn_core.metrics import RUN_METRICS


# -- output --------------------------------------------------------------------------------------------------------
TABLE_METRICS = (("FA", "FA"), ("RA", "RA"), ("TA", "TA"), ("MIA_entropy", "MIA-ent"), ("avg_gap", "Avg.Gap"),
                 ("seconds", "Time (s)"))


def _varied(result: dict) -> dict[str, set]:
    """Per method, the parameters a reader needs to tell its cells apart (grid names, and any that differ)."""
    spec = result.get("spec") or {}
    varied: dict[str, set] = {}
    for cell in result["cells"]:
        names = varied.setdefault(cell["method"], set((spec.get("grid") or {}).get(cell["method"], {})))
        for other in result["cells"]:
            if other["method"] == cell["method"]:
                names.update(k for k, v in cell["params"].items() if other["params"].get(k) != v)
    return varied


def _params_text(params: dict, method: str, varied: dict[str, set]) -> str:
    varied = varied.get(method, set())
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(params.items()) if k in varied) or "defaults"


def _stat_text(stats: dict, mark: bool = False) -> str:
    mean = stats.get("mean")
    if mean is None:
        return "–"
    text = f"{mean:.2f}"
    if stats.get("ci_low") is not None:
        text += f" ± {stats['ci_high'] - mean:.2f}"
    if mark and stats.get("inside"):
        text += " ✓"
    return text


def _verdict_texts(cell: dict) -> list[str]:
    """Forget quality (K), KLoM P95 on the forget set and U-LiRA TPR at 1 % FPR of a cell, as table text."""
    if not cell.get("verdicts"):
        return ["–"] * 3
    if cell.get("forget_quality") is None:
        return ["n/a"] * 3
    klom = (cell.get("klom_p95") or {}).get("forget")
    tpr = (cell.get("ulira") or {}).get("tpr_at_1fpr")
    return [f"{cell['forget_quality']:.3f} ({cell['verdicts']['k_used']})",
            "–" if klom is None else f"{klom:.2f}", "–" if tpr is None else f"{tpr:.3f}"]


def markdown_tables(result: dict) -> str:
    """Per forget set: the reference ensemble, the original model, then every cell (mean ± 95 % half-width).

    A ✓ marks a model metric whose mean lies inside the reference ensemble's spread.
    """
    parts = []
    spec = _varied(result)
    for entry in result["forgets"]:
        ref = entry["reference"]
        parts.append(f"### {result['dataset']} / {result['model']}, forget `{entry['forget']}` "
                     f"(seeds {','.join(map(str, result.get('seeds') or []))}; reference: "
                     f"{len(ref['run_ids'])} retrained models)\n")
        scored = [c.get("verdicts") for c in result["cells"] if c["forget"] == entry["forget"]]
        with_score = any(d is not None for d in scored)
        header = "| Cell | n | " + " | ".join(label for _, label in TABLE_METRICS) + \
            (" | Forget quality (K) | KLoM P95 | TPR@1%FPR |" if with_score else " |")
        lines = [header, "|" + "---|" * (len(TABLE_METRICS) + 2 + 3 * with_score)]
        ref_cells = []
        for key, _ in TABLE_METRICS:
            stats = ref["metrics"][key]
            ref_cells.append("–" if stats["mean"] is None else
                             f"{stats['mean']:.2f}" + (f" ± {stats['std']:.2f} sd" if stats.get("std") is not None else ""))
        extra = " | – | – | –" if with_score else ""
        lines.append(f"| Retrain ensemble | {len(ref['run_ids'])} | " + " | ".join(ref_cells) + extra + " |")
        original = entry["original"]["metrics"]
        lines.append(f"| Original | {len(entry['original']['seeds'])} | " + " | ".join(
            _stat_text(original[key]) if key in original else "–" for key, _ in TABLE_METRICS) + extra + " |")
        for cell in (c for c in result["cells"] if c["forget"] == entry["forget"]):
            name = f"`{cell['method']}` {_params_text(cell['params'], cell['method'], spec)}"
            if cell["failed"]:
                name += f" [{cell['failed']} failed]"
            values = [_stat_text(cell["summary"][key], key not in RUN_METRICS) for key, _ in TABLE_METRICS]
            if with_score:
                values.extend(_verdict_texts(cell))
            lines.append(f"| {name} | {len(cell['seeds'])} | " + " | ".join(values) + " |")
        parts.append("\n".join(lines) + "\n")
        if with_score:
            notes = sorted({d["note"] for d in scored if d and d.get("note")})
            parts.append(f"Verdicts against the retrained models (protocol `{result.get('protocol', 'seeds')}`): "
                         "forget quality as the NeurIPS 2023 competition's released metric.py computes it (1 = no "
                         "threshold attack tells the unlearned models from the retrained ones), K = models per side; "
                         "KLoM P95 on the forget set (EasyDUB; 0 = the margins' distributions match); U-LiRA TPR at "
                         "1 % FPR on the forget set (docs/EVIDENCE.md). "
                         + " ".join(f"Note: {n}." for n in notes) + "\n")
        errors = [f"- `{c['method']}` {_params_text(c['params'], c['method'], spec)} seed {r['seed']}: {r['error']}"
                  for c in result["cells"] if c["forget"] == entry["forget"] for r in c["runs"]
                  if r["status"] != "done"]
        errors += [f"- reference seed {r['seed']}: {r['error']}" for r in ref["failed"]]
        if errors:
            parts.append("Failed runs:\n" + "\n".join(errors) + "\n")
    return "\n".join(parts)


def flat_rows(result: dict) -> list[dict]:
    """One CSV row per cell (aggregates) and one per run (its metrics), told apart by ``row``."""
    rows = []
    base = {"sweep": result["tag"], "dataset": result["dataset"], "model": result["model"]}
    for entry in result["forgets"]:
        row = {**base, "row": "reference", "forget": entry["forget"], "method": "retrain", "params": "{}",
               "n": len(entry["reference"]["run_ids"])}
        for metric in result["metrics"]:
            stats = entry["reference"]["metrics"][metric]
            row.update({f"{metric}_mean": stats["mean"], f"{metric}_std": stats["std"]})
        rows.append(row)
    for cell in result["cells"]:
        row = {**base, "row": "cell", "cell": cell["id"], "forget": cell["forget"], "method": cell["method"],
               "params": json.dumps(cell["params"], sort_keys=True), "n": len(cell["seeds"]),
               "failed": cell["failed"],
               "protocol": result.get("protocol", "seeds"),
               "forget_quality": cell.get("forget_quality"),
               "forget_quality_k": (cell.get("verdicts") or {}).get("k_used"),
               "competition_score": (cell.get("competition_score") or {}).get("final_score"),
               **{f"klom_p95_{split}": (cell.get("klom_p95") or {}).get(split)
                  for split in ("forget", "retain", "validation")},
               **{f"ulira_{key}": (cell.get("ulira") or {}).get(key) for key in ("auc", "tpr_at_1fpr", "tpr_at_5fpr")}}
        for metric in result["metrics"]:
            stats = cell["summary"][metric]
            row.update({f"{metric}_{part}": stats[part]
                        for part in ("mean", "std", "ci_low", "ci_high", "gap", "inside")})
        rows.append(row)
        for run in cell["runs"]:
            run_row = {**base, "row": "run", "cell": cell["id"], "forget": cell["forget"], "method": cell["method"],
                       "params": json.dumps(cell["params"], sort_keys=True), "run_id": run["run_id"],
                       "seed": run["seed"], "status": run["status"], "error": run["error"],
                       "node_id": run.get("node_id")}
            run_row.update({f"{metric}_value": run["metrics"].get(metric) for metric in result["metrics"]})
            rows.append(run_row)
    return rows


def json_bytes(result: dict) -> bytes:
    """Any result (a sweep's, a bench's) as indented strict JSON (NaN and infinities as null)."""
    from unlearn_core.jsonsafe import jsonable

    return (json.dumps(jsonable(result), indent=2) + "\n").encode()


def csv_bytes(result: dict) -> bytes:
    """A sweep result's :func:`flat_rows` as CSV."""
    return rows_csv_bytes(flat_rows(result), empty_header=("sweep",))


def rows_csv_bytes(rows: list[dict], empty_header: tuple[str, ...] = ("sweep",)) -> bytes:
    """Flat rows as CSV: the columns in first-seen order, empty cells for None, NaN and infinities."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns or list(empty_header), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
                         for k, v in row.items()})
    return buffer.getvalue().encode()


def new_tag(prefix: str = "sweep") -> str:
    return f"{prefix}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
