"""Plotly figures for sweeps and evidence, built from plain frames and report sections (no Streamlit).

Colour conventions are the app's (``figures``): one colour per method (:func:`figures.method_colour`), and
signed gaps on plotly's ``RdBu`` with a fixed symmetric range from :func:`figures.change_limit`, so red
always means "below the retrained model" and blue "above it", whatever the sweep.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from unlearn_core.figures import CHANGE_SCALE, change_limit, method_colour

# Avg. Gap is never negative: a sequential scale from 0 (white, "like retraining") with fixed steps.
GAP_SCALE = "Reds"


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
    if matrix["signed"]:
        colour_kw = dict(colorscale=CHANGE_SCALE, cmin=-limit, cmax=limit, cmid=0)
    else:
        colour_kw = dict(colorscale=GAP_SCALE, cmin=0, cmax=limit)
    size = max(14, min(56, int(560 / max(len(xs), len(ys), 1))))
    where = f"{matrix['x_name']}=%{{x}}" + (f"<br>{matrix['y_name']}=%{{y}}" if matrix["y_name"] else "")
    fig = go.Figure(go.Scatter(
        x=[c[0] for c in shown], y=[c[1] for c in shown], mode="markers+text", name="cells", showlegend=False,
        text=[f"{c[2]:.1f}" for c in shown], textfont=dict(size=10), customdata=[c[3] for c in shown],
        marker=dict(symbol="square", size=size, color=[c[2] for c in shown], line=dict(width=1, color="#888"),
                    colorbar=dict(title=matrix["title"].split(" (")[0]), showscale=True, **colour_kw),
        hovertemplate=where + "<br>%{text}<extra>click: open in Results</extra>"))
    if missing:
        fig.add_trace(go.Scatter(
            x=[c[0] for c in missing], y=[c[1] for c in missing], mode="markers+text", name="no value (failed)",
            text=["✕"] * len(missing), customdata=[c[3] for c in missing],
            marker=dict(symbol="square", size=size, color="#D9D9D9", line=dict(width=1, color="#888")),
            hovertemplate=where + "<br>no value: its runs failed<extra>click: open in Results</extra>"))
    # Rows a little taller than the squares, so cells stand apart as a grid whatever the number of values.
    fig.update_layout(title=f"{method}: {matrix['title']}", template="plotly_white",
                      height=150 + (size + 8) * max(len(ys), 2), legend=dict(orientation="h", y=-0.08),
                      margin=dict(l=10, r=10, t=40, b=10), clickmode="event+select", dragmode=False,
                      xaxis=dict(title=matrix["x_name"], type="category", categoryorder="array", categoryarray=xs),
                      yaxis=dict(title=matrix["y_name"] or "", type="category", categoryorder="array",
                                 categoryarray=ys, showticklabels=bool(matrix["y_name"])))
    return fig


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
                      xaxis_title=f"forgetting error |{f_metric} − retrained| (points)",
                      yaxis_title=f"{r_metric} loss vs retrained (points)", legend_title="method")
    return fig


# -- evidence ------------------------------------------------------------------------------------------------------
EVIDENCE_MODELS = ("original", "unlearned", "retrained")
EVIDENCE_COLOURS = {"original": "#C7C7C7", "retrained": "#7F7F7F"}


def probe_bars(probe: dict, method: str) -> go.Figure:
    """Probe accuracies (linear and k-NN on the forget set, linear on retained samples) per model, grouped."""
    metrics = [("probe_forget", "linear probe, forget"), ("knn_forget", "k-NN, forget"),
               ("probe_retain", "linear probe, retained")]
    fig = go.Figure()
    for which in EVIDENCE_MODELS:
        values = probe.get(which) or {}
        colour = EVIDENCE_COLOURS.get(which) or method_colour(method)
        fig.add_trace(go.Bar(name=which if which != "unlearned" else f"unlearned ({method})",
                             x=[label for _, label in metrics], y=[values.get(k) for k, _ in metrics],
                             marker_color=colour, text=[None if values.get(k) is None else f"{values[k]:.0f}"
                                                        for k, _ in metrics], textposition="outside"))
    fig.update_layout(barmode="group", title="Feature probe: is the forget data still in the features?",
                      yaxis=dict(title="accuracy (%)", range=[0, 110]), template="plotly_white", height=330,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def relearn_curves(relearn: dict, method: str) -> go.Figure:
    """Forget accuracy per relearning step for each model, with each model's target as a dotted line."""
    fig = go.Figure()
    for which in EVIDENCE_MODELS:
        values = relearn.get(which) or {}
        history = values.get("accuracy_by_step") or []
        if not history:
            continue
        colour = EVIDENCE_COLOURS.get(which) or method_colour(method)
        name = which if which != "unlearned" else f"unlearned ({method})"
        fig.add_trace(go.Scatter(x=list(range(len(history))), y=history, mode="lines+markers", name=name,
                                 line=dict(color=colour)))
        if values.get("target_acc") is not None and which != "original":
            fig.add_hline(y=values["target_acc"], line=dict(dash="dot", color=colour, width=1))
    fig.update_layout(title="Relearning: forget accuracy per fine-tuning step (dotted: each model's target)",
                      xaxis_title="relearn step", yaxis=dict(title="forget accuracy (%)", range=[-5, 105]),
                      template="plotly_white", height=330, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def unlearning_curves(curves: dict, method: str) -> go.Figure:
    """Acc_f (or FA), Acc_r and the method's loss along its optimiser steps; step 0 is the original model."""
    from plotly.subplots import make_subplots

    points = curves.get("points") or []
    steps = [p.get("step") for p in points]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for key, colour, dash in (("Acc_f", "#D62728", "solid"), ("FA", "#FF7F0E", "solid"),
                              ("Acc_r", "#1F77B4", "solid")):
        values = [p.get(key) for p in points]
        if all(v is None for v in values):
            continue
        fig.add_trace(go.Scatter(x=steps, y=values, name=key, mode="lines+markers", line=dict(color=colour, dash=dash),
                                 text=[f"epoch {p.get('epoch')}, {p.get('stage')}" for p in points],
                                 hovertemplate="step %{x}<br>%{text}<br>" + key + " %{y:.1f}<extra></extra>"),
                      secondary_y=False)
    losses = [p.get("loss") for p in points]
    if any(v is not None for v in losses):
        fig.add_trace(go.Scatter(x=steps, y=losses, name="loss", mode="lines", line=dict(color="#888", dash="dot")),
                      secondary_y=True)
    fig.update_layout(title=f"Unlearning curve of {method} (fixed evaluation subsets)", template="plotly_white",
                      height=330, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="optimiser step")
    fig.update_yaxes(title_text="accuracy (%)", range=[-5, 105], secondary_y=False)
    fig.update_yaxes(title_text="loss", secondary_y=True, showgrid=False)
    return fig
