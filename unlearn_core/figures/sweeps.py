"""Figures of a sweep's cells: the phase map on two swept parameters and the Pareto scatter.

Signed gaps use :data:`~unlearn_core.figures.style.CHANGE_SCALE` with a fixed symmetric range from
:func:`~unlearn_core.figures.style.change_limit`, so red always means "below the retrained model" and blue
"above it", whatever the sweep; one colour per method (:func:`~unlearn_core.figures.style.method_colour`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from unlearn_core.figures.style import CHANGE_SCALE, change_limit, method_colour
from unlearn_core.tables.grids import categorical_axis

# Avg. Gap is never negative: a sequential scale from 0 (white, "like retraining") with fixed steps.
GAP_SCALE = "Reds"
DARK_TEXT, LIGHT_TEXT = "#1a1a1a", "#ffffff"


def relative_luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of an ``rgb(r, g, b)`` or ``#rrggbb`` colour: 0.2126 R + 0.7152 G + 0.0722 B
    of the linearised sRGB channels (c / 12.92 below 0.04045, else ((c + 0.055) / 1.055) ** 2.4)."""
    from plotly.colors import hex_to_rgb, unlabel_rgb

    rgb = hex_to_rgb(colour) if colour.startswith("#") else unlabel_rgb(colour)
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def label_colours(values, colorscale: str, cmin: float, cmax: float) -> list[str]:
    """A readable text colour for each value drawn on ``colorscale`` over ``[cmin, cmax]``: dark on light
    backgrounds, white on dark ones. The switch is at luminance 0.179, where black and white text have the
    same WCAG contrast ratio with the background."""
    from plotly.colors import get_colorscale, sample_colorscale

    scale = get_colorscale(colorscale)
    span = (cmax - cmin) or 1.0
    out = []
    for value in values:
        t = min(1.0, max(0.0, (float(value) - cmin) / span)) if math.isfinite(float(value)) else 0.5
        background = sample_colorscale(scale, [t])[0]
        out.append(DARK_TEXT if relative_luminance(background) > 0.179 else LIGHT_TEXT)
    return out


def _tick(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def phase_map(matrix: dict, method: str) -> go.Figure:
    """One method's cells on its two swept parameters, coloured by the chosen gap.

    Drawn as square markers on categorical axes, not a heatmap, because Streamlit reports clicks on scatter
    points (``customdata`` carries each cell's id). Signed gaps (cell − retrained) use the app's ``RdBu``:
    red = below the retrained model (forgot more than it: over-unlearning on the forget metric; accuracy
    lost on the retained one), blue = above it (still remembers: under-unlearning on the forget metric).
    """
    z = np.asarray(matrix["z"], dtype=float)
    xs, ys = [_tick(v) for v in matrix["x"]], [_tick(v) if v is not None else "" for v in matrix["y"]]
    cells = [(x, y, z[i, j], matrix["cell_ids"][i][j]) for i, y in enumerate(ys) for j, x in enumerate(xs)
             if matrix["cell_ids"][i][j] is not None]
    shown = [c for c in cells if not math.isnan(c[2])]
    # A cell without a value (every run failed, or no reference) must not take the scale's neutral white, which
    # reads "like retraining": it is drawn grey and says so.
    missing = [c for c in cells if math.isnan(c[2])]
    limit = change_limit(np.nan_to_num(z))
    fixed = matrix.get("range")
    decimals = 1
    if fixed:
        # A verdict's own fixed range; red is always the bad end (low forget quality, high KLoM or TPR).
        low, high, higher_better = fixed
        colour_kw = dict(colorscale=GAP_SCALE + ("_r" if higher_better else ""), cmin=low, cmax=high)
        decimals = 2
    elif matrix["signed"]:
        colour_kw = dict(colorscale=CHANGE_SCALE, cmin=-limit, cmax=limit, cmid=0)
    else:
        colour_kw = dict(colorscale=GAP_SCALE, cmin=0, cmax=limit)
    size = max(14, min(56, int(560 / max(len(xs), len(ys), 1))))
    where = f"{matrix['x_name']}=%{{x}}" + (f"<br>{matrix['y_name']}=%{{y}}" if matrix["y_name"] else "")
    reasons = matrix.get("reasons") or [[""] * len(xs) for _ in ys]
    # Each cell's label colour follows its background, so "100.0" stays readable on the scale's dark ends.
    text_colours = label_colours([c[2] for c in shown], colour_kw["colorscale"], colour_kw["cmin"],
                                 colour_kw["cmax"])
    failed_note = ["" if not reasons[i][j] else f"<br>some runs failed: {reasons[i][j]}"
                   for i in range(len(ys)) for j in range(len(xs)) if matrix["cell_ids"][i][j] is not None]
    shown_notes = [note for note, c in zip(failed_note, cells) if not math.isnan(c[2])]
    fig = go.Figure(go.Scatter(
        x=[c[0] for c in shown], y=[c[1] for c in shown], mode="markers+text", name="cells", showlegend=False,
        text=[f"{c[2]:.{decimals}f}" for c in shown], textfont=dict(size=10, color=text_colours),
        customdata=[c[3] for c in shown], hovertext=shown_notes,
        marker=dict(symbol="square", size=size, color=[c[2] for c in shown], line=dict(width=1, color="#888"),
                    colorbar=dict(title=matrix["title"].split(" (")[0]), showscale=True, **colour_kw),
        hovertemplate=where + "<br>%{text}%{hovertext}<extra>click: open in Results</extra>"))
    if missing:
        # A verdict is missing where the sweep has too few models, a gap where the cell's runs failed: the
        # tooltip gives the stored reason of the first failed run.
        why = "no verdicts (needs 3+ seeds and 3+ retrained models)" if fixed else "no value (failed)"
        notes = [reason for reason, c in zip([r for i in range(len(ys)) for j, r in enumerate(reasons[i])
                                              if matrix["cell_ids"][i][j] is not None], cells) if math.isnan(c[2])]
        fig.add_trace(go.Scatter(
            x=[c[0] for c in missing], y=[c[1] for c in missing], mode="markers+text", name=why,
            text=["✕"] * len(missing), customdata=[c[3] for c in missing],
            hovertext=[note or why for note in notes],
            marker=dict(symbol="square", size=size, color="#D9D9D9", line=dict(width=1, color="#888")),
            hovertemplate=where + "<br>%{hovertext}<extra>click: open in Results</extra>"))
    # Rows a little taller than the squares, so cells stand apart as a grid whatever the number of values.
    # The legend sits above the plot, right-aligned, so it never covers the x axis' tick labels.
    fig.update_layout(title=f"{method}: {matrix['title']}", template="plotly_white",
                      height=170 + (size + 8) * max(len(ys), 2),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
                      margin=dict(l=10, r=10, t=60, b=10), clickmode="event+select", dragmode=False,
                      xaxis=_axis(matrix["x"], xs, matrix["x_name"]),
                      yaxis=dict(**_axis(matrix["y"], ys, matrix["y_name"] or ""),
                                 showticklabels=bool(matrix["y_name"])))
    return fig


def _axis(values, ticks: list[str], title: str) -> dict:
    """A phase map axis: categorical (each value one evenly spaced column, in the grid's order) for grids
    (:func:`~unlearn_core.tables.grids.categorical_axis`), numeric otherwise."""
    if categorical_axis([v for v in values if v is not None]):
        return dict(title=title, type="category", categoryorder="array", categoryarray=ticks)
    return dict(title=title, type="linear")


def pareto_scatter(frame: pd.DataFrame, front: list[str] | None = None) -> go.Figure:
    """Forgetting error (x) against retained-accuracy loss (y), size = seconds, one colour per method.

    The lower-left corner is "like retraining". The cells on the Pareto front (no other cell better on both
    axes) are joined by a dashed line. ``customdata`` holds each point's cell id.
    """
    fig = go.Figure()
    f_metric = frame.attrs.get("forget_metric", "Acc_f")
    r_metric = frame.attrs.get("retain_metric", "Acc_r")
    seconds = frame["seconds"].to_numpy(dtype=float) if len(frame) else np.zeros(0)
    top = np.nanmax(seconds) if len(seconds) and np.isfinite(seconds).any() else 1.0
    for method, cells in frame.groupby("method", sort=False):
        s = cells["seconds"].to_numpy(dtype=float)
        sizes = 8 + 30 * np.sqrt(np.nan_to_num(s) / top) if top > 0 else np.full(len(s), 10.0)
        labels = [f"{row['title']} {row['params']}" for _, row in cells.iterrows()]
        fig.add_trace(go.Scatter(
            x=cells["forget_error"], y=cells["retain_loss"], mode="markers", name=str(method),
            marker=dict(color=method_colour(method), size=sizes, opacity=0.8, line=dict(width=1, color="white")),
            customdata=list(cells["cell_id"]), text=labels,
            hovertemplate=("%{text}<br>|Δ " + f_metric + "| %{x:.2f}<br>" + r_metric
                           + " loss %{y:.2f}<extra>click: open in Results</extra>")))
    if front:
        on = frame[frame["cell_id"].isin(front)].sort_values("forget_error")
        fig.add_trace(go.Scatter(x=on["forget_error"], y=on["retain_loss"], mode="lines", name="Pareto front",
                                 line=dict(dash="dash", color="#444", width=1), hoverinfo="skip"))
    fig.update_layout(title="Forgetting error vs retained-accuracy loss (size = time)", template="plotly_white",
                      height=420, margin=dict(l=10, r=10, t=40, b=10), clickmode="event+select", dragmode=False,
                      xaxis=dict(title=f"forgetting error |{f_metric} − retrained| (points)",
                                 range=pareto_range(frame["forget_error"] if len(frame) else [])),
                      yaxis=dict(title=f"{r_metric} loss vs retrained (points)",
                                 range=pareto_range(frame["retain_loss"] if len(frame) else [])),
                      legend_title="method")
    return fig


def pareto_range(values, floor: float = 5.0) -> list[float]:
    """A Pareto axis from 0 (like retraining) to 10 % beyond the largest finite value, and at least to
    ``floor`` points: one point, or points that differ by a fraction of a point, never stretch a 2-point axis
    across the plot (plotly's autorange puts a lone point at 99 on a 98-100 axis)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    top = max(finite, default=0.0)
    return [-0.02 * max(top * 1.1, floor), max(top * 1.1, floor)]


def pareto_note(frame: pd.DataFrame) -> str | None:
    """Why a Pareto scatter has nothing to trade off (fewer than two cells with both axes), or None."""
    if not len(frame):
        return "No cell has finished yet."
    points = frame[["forget_error", "retain_loss"]].dropna()
    if len(points) < 2:
        return (f"Only {len(points)} cell(s) have both a forgetting error and a retained-accuracy loss (the others "
                "failed or lack a retrained model): there is nothing to trade off yet.")
    return None
