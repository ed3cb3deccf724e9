"""A sweep's cells as tables: grids drawn from declared parameters, the phase map's matrix, the Pareto front.

- :func:`grid_values` turns a method's declared :class:`~unlearn_core.methods.Param` into a small grid, so the
  app never asks a person to type values a declaration already bounds;
- :func:`cell_frame` flattens :func:`unlearn_core.sweeps.sweep_result` into one row per cell with the three
  colours of the phase map (signed forget gap, retain drop, Avg. Gap) and the Pareto axes;
- :func:`phase_matrix` lays one method's cells on two parameters; :func:`pareto_front` marks the cells no
  other cell beats on both forgetting error and retained-accuracy loss.
"""

from __future__ import annotations

import json
import math
import numbers

import numpy as np
import pandas as pd

from unlearn_core.jsonsafe import one_line

# The phase map's colours: name -> (column, title, signed). Signed columns get a diverging symmetric scale.
COLOUR_BY = {
    "forget gap": ("forget_gap", "Forget gap (cell − retrained, points; blue = remembers, red = forgot more)", True),
    "retain drop": ("retain_gap", "Retained accuracy (cell − retrained, points; red = dropped)", True),
    "Avg. Gap": ("avg_gap", "Avg. Gap to the retrained model (points)", False),
    "forget quality": ("forget_quality", "Forget quality (the competition's released metric.py over the seeds; "
                       "1 = like retraining)", False),
    "KLoM P95": ("klom_p95_forget", "KLoM P95 on the forget set (0 = margins like the retrained models')", False),
    "U-LiRA TPR@1%FPR": ("ulira_tpr_at_1fpr", "U-LiRA TPR at 1 % FPR on the forget set (0.01 = chance)", False),
}
#: Colours with a fixed range of their own (column -> (low, high, higher is better)); the rest use the gap scale.
#: KLoM's ceiling is ln(1e5): the KL of a sample whose two families share no bin (the 1e-5 floor).
COLOUR_RANGES = {"forget_quality": (0.0, 1.0, True), "klom_p95_forget": (0.0, math.log(1e5), False),
                 "ulira_tpr_at_1fpr": (0.0, 1.0, False)}
#: The ensemble verdicts' columns: missing when a sweep has fewer than 3 seeds or 3 retrained models.
VERDICT_COLUMNS = tuple(COLOUR_RANGES)
MAX_GRID_VALUES = 10


def grid_values(param, count: int) -> list:
    """``count`` values of a declared parameter for a sweep's default grid, inside its declared range.

    With a declared ``sweep`` span ``(first, last)`` the values run from ``first`` to ``last``: geometrically for
    log-scale or positive spans, linearly otherwise. Without one they spread geometrically from a quarter of
    the default to four times it (linearly for defaults at zero or ranges that include no positive number),
    clipped to ``[low, high]``. Ints are rounded and deduplicated (so fewer may come back); booleans give both
    values, choices all of them.
    """
    count = int(count)
    if count < 1:
        raise ValueError("a grid needs at least one value")
    if param.type is bool:
        return [False, True]
    if param.choices:
        return list(param.choices)[:count]
    if param.type not in (int, float):
        raise ValueError(f"parameter {param.name!r} has no declared range to draw a grid from")
    default = float(param.default)
    low = -math.inf if param.low is None else float(param.low)
    high = math.inf if param.high is None else float(param.high)
    if param.sweep is not None:
        start, stop = (float(v) for v in param.sweep)
        geometric = start > 0 and (param.log or param.type is float)
        if count == 1:
            raw = np.array([default])
        else:
            raw = np.geomspace(start, stop, count) if geometric else np.linspace(start, stop, count)
    elif default > 0 and (param.log or low >= 0):
        start, stop = max(default / 4, low if low > 0 else default / 4), min(default * 4, high)
        raw = np.geomspace(start, stop, count) if count > 1 else np.array([default])
    else:
        span = abs(default) or 1.0
        start, stop = max(default - span, low), min(default + span, high)
        raw = np.linspace(start, stop, count) if count > 1 else np.array([default])
    if param.type is int:
        values = sorted({int(round(v)) for v in raw})
        return [v for v in values if low <= v <= high]
    # Three significant digits: values people can read on an axis and type back into the CLI.
    values = sorted({float(f"{v:.3g}") for v in raw})
    return [v for v in values if low <= v <= high]


def parse_grid_text(param, text: str) -> list:
    """Grid values typed as comma-separated text (``"1e-3, 2e-3"``), each checked by :meth:`Param.coerce`
    (ASCII numbers via :mod:`unlearn_core.parsing`, the declared range, choices); ordered as a sweep's axis.

    Raises :class:`~unlearn_core.errors.ParameterError` with one line naming the bad value, an empty list or
    a repeated value.
    """
    from unlearn_core.errors import ParameterError

    parts = [part.strip() for part in str(text).split(",")]
    if not any(parts):
        raise ParameterError(f"{param.name}: type at least one value, e.g. {param.default}")
    if any(not part for part in parts):
        raise ParameterError(f"{param.name}: an empty value between commas")
    if len(parts) > MAX_GRID_VALUES:
        raise ParameterError(f"{param.name}: at most {MAX_GRID_VALUES} values, got {len(parts)}")
    values = [param.coerce(part) for part in parts]
    if len({repr(v) for v in values}) < len(values):
        raise ParameterError(f"{param.name}: a value is repeated")
    return sorted(values, key=_sort_key)


def gridable(method_cls) -> list:
    """The parameters of a method a sweep can vary from their declaration (numbers, booleans, choices)."""
    return [p for p in method_cls.params if p.type in (int, float, bool) or p.choices]


def spec_cells(spec: dict) -> int:
    """How many cells a stored sweep spec asks for (forget sets x methods x grid points), without reading runs."""
    total = 0
    for method in spec.get("methods") or []:
        points = 1
        for values in ((spec.get("grid") or {}).get(method) or {}).values():
            points *= max(1, len(values))
        total += points
    return total * max(1, len(spec.get("forgets") or []))


def _mean(cell: dict, metric: str):
    stats = (cell.get("summary") or {}).get(metric) or {}
    return stats.get("mean")


def _gap(cell: dict, metric: str):
    stats = (cell.get("summary") or {}).get(metric) or {}
    return stats.get("gap")


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(float(value)) else float("nan")


def forget_metric(cells: list[dict]) -> str:
    """``Acc_f`` when the forget set has classes (the runs report it), else ``FA``."""
    return "Acc_f" if any(_mean(c, "Acc_f") is not None for c in cells) else "FA"


def retain_metric(cells: list[dict]) -> str:
    return "Acc_r" if any(_mean(c, "Acc_r") is not None for c in cells) else "TA"


def cell_frame(result: dict, forget: str | None = None) -> pd.DataFrame:
    """One row per cell of ``result`` (one forget set: ``forget`` or the first).

    Columns: ``cell_id``, ``forget``, ``method``, ``title``, ``params`` (JSON), one ``p.NAME`` column per
    parameter, ``n`` (seeds done), ``failed``, ``run_ids`` and ``seeds`` (of its done runs), ``failed_ids`` (its
    runs that did not finish) and ``reason`` (the first one's stored error on one line, "" if none), and the
    cell's means:

    - ``forget_gap``: mean forget metric (Acc_f, or FA without forgotten classes) minus the retrained
      ensemble's mean. Positive = remembers more than the retrained model (under-unlearning), negative =
      forgot more (over-unlearning, e.g. random samples pushed into a wrong class);
    - ``retain_gap``: the cell's mean retained metric (Acc_r, or TA) minus the ensemble's, and ``retain_drop``
      its negation: a positive drop = retained accuracy lost against retraining (over-unlearning);
    - ``forget_error`` = |forget_gap| and ``retain_loss`` = max(retain_drop, 0): the Pareto axes;
    - ``avg_gap`` and ``seconds`` (means over seeds);
    - the cell's ensemble verdicts (``unlearn_core.sweeps.aggregate``), NaN where it has none:
      ``forget_quality`` (the competition's released score), ``klom_p95_forget`` (KLoM P95 on the forget
      set) and ``ulira_tpr_at_1fpr`` (the U-LiRA attack's TPR at 1 % FPR on the forget set).
    """
    forgets = [f["forget"] for f in result.get("forgets") or []]
    forget = forget if forget is not None else (forgets[0] if forgets else None)
    cells = [c for c in result.get("cells") or [] if forget is None or c["forget"] == forget]
    f_metric, r_metric = forget_metric(cells), retain_metric(cells)
    rows = []
    for cell in cells:
        done = [r for r in cell["runs"] if r["status"] == "done"]
        forget_gap = _number(_gap(cell, f_metric))
        retain_gap = _number(_gap(cell, r_metric))
        row = {"cell_id": cell["id"], "forget": cell["forget"], "method": cell["method"],
               "title": cell.get("title") or cell["method"], "params": json.dumps(cell["params"], sort_keys=True),
               "n": len(done), "failed": int(cell.get("failed") or 0),
               "run_ids": [int(r["run_id"]) for r in done], "seeds": [int(r["seed"]) for r in done],
               "failed_ids": [int(r["run_id"]) for r in cell["runs"] if r["status"] != "done"],
               "reason": next((one_line(r.get("error") or r["status"]) for r in cell["runs"]
                               if r["status"] != "done"), ""),
               "forget_gap": forget_gap, "retain_gap": retain_gap, "retain_drop": -retain_gap,
               "forget_error": abs(forget_gap), "retain_loss": max(-retain_gap, 0.0) if not math.isnan(retain_gap)
               else float("nan"),
               "avg_gap": _number(_mean(cell, "avg_gap")), "seconds": _number(_mean(cell, "seconds")),
               "forget_quality": _number(cell.get("forget_quality")),
               "klom_p95_forget": _number((cell.get("klom_p95") or {}).get("forget")),
               "ulira_tpr_at_1fpr": _number((cell.get("ulira") or {}).get("tpr_at_1fpr"))}
        row.update({f"p.{name}": value for name, value in cell["params"].items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update({"forget_metric": f_metric, "retain_metric": r_metric, "forget": forget})
    return frame


def varied_params(frame: pd.DataFrame, method: str) -> list[str]:
    """The parameters whose values differ between ``method``'s cells: the phase map's candidate axes."""
    cells = frame[frame["method"] == method]
    names = [c[2:] for c in frame.columns if c.startswith("p.")]
    out = []
    for name in names:
        values = cells[f"p.{name}"].dropna()
        if values.map(repr).nunique() > 1:
            out.append(name)
    return out


def _sort_key(value):
    # numbers.Real, not (int, float): pandas hands back numpy integers, and "10" sorted before "2" as text.
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def phase_matrix(frame: pd.DataFrame, method: str, x: str, y: str | None, colour: str) -> dict:
    """One method's cells on a grid: ``x`` values (columns) by ``y`` values (rows; one row when ``y`` is None).

    Returns ``{"x": [...], "y": [...], "z": 2-D array (NaN where no cell), "cell_ids": 2-D list (None where no
    cell), "reasons": 2-D list (a failed run's one-line error, "" where none), "column", "title", "signed",
    "range"}`` (``range``: :data:`COLOUR_RANGES`' fixed range, or None). Cells whose other parameters differ would
    land on one grid point; the one with the most seeds wins and ``collisions`` counts the rest, so the page can say so.
    """
    column, title, signed = COLOUR_BY[colour]
    cells = frame[frame["method"] == method]
    xs = sorted(cells[f"p.{x}"].unique(), key=_sort_key)
    ys = sorted(cells[f"p.{y}"].unique(), key=_sort_key) if y else [None]
    z = np.full((len(ys), len(xs)), np.nan)
    ids: list[list] = [[None] * len(xs) for _ in ys]
    reasons: list[list] = [[""] * len(xs) for _ in ys]
    seeds = np.full((len(ys), len(xs)), -1)
    collisions = 0
    for _, data in cells.iterrows():
        i = ys.index(data[f"p.{y}"]) if y else 0
        j = xs.index(data[f"p.{x}"])
        if ids[i][j] is not None:
            collisions += 1
            if data["n"] <= seeds[i, j]:
                continue
        z[i, j] = data[column]
        ids[i][j] = data["cell_id"]
        reasons[i][j] = data["reason"] if "reason" in data else ""
        seeds[i, j] = data["n"]
    return {"x": xs, "y": ys, "z": z, "cell_ids": ids, "reasons": reasons, "column": column, "title": title,
            "signed": signed, "collisions": collisions, "x_name": x, "y_name": y, "range": COLOUR_RANGES.get(column)}


def pareto_front(frame: pd.DataFrame) -> list[str]:
    """Cell ids no other cell beats on both ``forget_error`` and ``retain_loss`` (lower is better on each)."""
    points = frame[["cell_id", "forget_error", "retain_loss"]].dropna()
    front = []
    values = points[["forget_error", "retain_loss"]].to_numpy(dtype=float)
    for k, cell_id in enumerate(points["cell_id"]):
        a = values[k]
        dominated = np.any(np.all(values <= a, axis=1) & np.any(values < a, axis=1))
        if not dominated:
            front.append(cell_id)
    return front


def cell_label(row) -> str:
    """``ga lr=0.001 epochs=3`` for a cell row (dict or Series): the method and its swept parameters."""
    params = json.loads(row["params"]) if isinstance(row["params"], str) else row["params"]
    varied = row.get("varied") if hasattr(row, "get") else None
    shown = {k: v for k, v in params.items() if not varied or k in varied}
    return " ".join([str(row["method"]), *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in shown.items())])


def failure_rows(frame: pd.DataFrame) -> list[dict]:
    """One row per cell of ``frame`` (:func:`cell_frame`) with a run that did not finish: ``method``, ``cell``
    (the method and the parameters its cells vary, :func:`cell_label`), ``cell_id``, ``failed`` (how many of
    its runs), ``done``, ``run_ids`` (the failed runs) and ``reason`` (the first failed run's stored error)."""
    if not len(frame):
        return []
    rows = []
    for _, row in frame[frame["failed"] > 0].iterrows():
        varied = set(varied_params(frame, row["method"]))
        rows.append({"method": row["method"], "cell": cell_label({**row.to_dict(), "varied": varied or {"-"}}),
                     "cell_id": row["cell_id"], "failed": int(row["failed"]), "done": int(row["n"]),
                     "run_ids": list(row["failed_ids"]), "reason": row["reason"] or "no reason was stored"})
    return rows


def categorical_axis(values, limit: int = MAX_GRID_VALUES) -> bool:
    """Whether a phase map draws ``values`` as categories (one evenly spaced column each, in order): every grid
    a sweep can be launched with (at most ``limit`` values) and any axis with a non-numeric value. Larger
    numeric axes (a search's trials) keep a numeric scale, where spacing shows the distances."""
    values = list(values)
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
    return not numeric or len(values) <= limit


def run_counts(runs: list[dict]) -> dict:
    """``{"done", "failed", "running", "total"}`` over a sweep's linked runs (``store.sweep_runs(tag)``), by
    their ``status``: what the sweep picker reports."""
    done = sum(1 for r in runs if r.get("status") == "done")
    failed = sum(1 for r in runs if r.get("status") in ("failed", "cancelled"))
    return {"done": done, "failed": failed, "running": len(runs) - done - failed, "total": len(runs)}
