"""Figures of one run against the references: per-class accuracy change, confusion changes and the entropy
histograms the entropy membership attack sees."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from unlearn_core.figures.style import CHANGE_SCALE, change_limit, method_colour


def forget_counts_figure(names: list[str], totals: np.ndarray, forget: dict[int, int]) -> go.Figure:
    """Training samples per class, stacked: what remains (grey) and what the forget set takes (red)."""
    fig = go.Figure()
    fig.add_bar(x=names, y=[int(totals[c]) - forget.get(c, 0) for c in range(len(names))], name="remain",
                marker_color="#BAB0AC")
    fig.add_bar(x=names, y=[forget.get(c, 0) for c in range(len(names))], name="forget", marker_color="#E15759")
    fig.update_layout(barmode="stack", height=260, title="Training samples per class",
                      margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig


def per_class_heatmap(shift: pd.DataFrame, forgotten: tuple[int, ...] = ()) -> go.Figure:
    """Method x class change in test accuracy (points); red = lost accuracy. Forgotten classes are marked."""
    columns = [f"{c} (forgotten)" if i in set(forgotten) else str(c) for i, c in enumerate(shift.columns)]
    values = shift.to_numpy(dtype=float)
    limit = change_limit(values)
    fig = go.Figure(go.Heatmap(z=values, x=columns, y=list(shift.index), zmin=-limit, zmax=limit, zmid=0,
                               colorscale=CHANGE_SCALE, colorbar=dict(title="Δ acc (pts)<br>red = lost"),
                               text=np.round(values, 1), texttemplate="%{text}",
                               hovertemplate="%{y}<br>class %{x}<br>Δ %{z:.1f} pts<extra></extra>"))
    fig.update_layout(title="Per-class test accuracy change vs the original", height=120 + 40 * len(shift),
                      margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(autorange="reversed"), template="plotly_white")
    return fig


def per_class_bars(shift: pd.DataFrame, forgotten: tuple[int, ...] = (), band: dict | None = None) -> go.Figure:
    """Grouped bars of the same change, one colour per method; retained classes that fell show over-unlearning.

    ``band`` (:func:`unlearn_core.tables.ensemble_band`: ``k``, ``low``, ``high`` per class) draws a retrained
    ensemble's spread behind each class's bars: a bar inside the grey band is within what retraining itself varies
    by.
    """
    fig = go.Figure()
    if band is not None:
        low, high = np.asarray(band["low"], dtype=float), np.asarray(band["high"], dtype=float)
        for i, (lo, hi) in enumerate(zip(low, high)):
            fig.add_shape(type="rect", x0=i - 0.48, x1=i + 0.48, y0=float(lo), y1=float(max(hi, lo + 0.2)),
                          fillcolor="#7F7F7F", opacity=0.22, line_width=0, layer="below")
        # A legend entry for the band (shapes have none): an invisible trace with the band's name.
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"retrained ensemble ±2 sd (K={band['k']})",
                                 marker=dict(symbol="square", size=12, color="rgba(127,127,127,0.35)")))
    for label, row in shift.iterrows():
        fig.add_trace(go.Bar(name=str(label), x=[str(c) for c in shift.columns], y=row.to_numpy(dtype=float),
                             marker_color=method_colour(label)))
    for cls in forgotten:
        fig.add_vrect(x0=cls - 0.5, x1=cls + 0.5, fillcolor="grey", opacity=0.15, line_width=0,
                      annotation_text="forgotten", annotation_position="top left")
    fig.update_layout(barmode="group", height=380, yaxis_title="Δ test accuracy (points)", xaxis_title="class",
                      margin=dict(l=10, r=10, t=30, b=10), template="plotly_white")
    return fig


def confusion_change(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Row-normalised confusion (after) minus (before), in points of each true class's test images."""
    def normalise(matrix):
        rows = matrix.sum(axis=1, keepdims=True).astype(float)
        return np.divide(matrix * 100.0, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)

    return normalise(after) - normalise(before)


def confusion_difference(after: np.ndarray, before: np.ndarray, class_names: list[str], title: str,
                         limit: float | None = None) -> go.Figure:
    """Row-normalised confusion (after) minus (before), in percent of each true class.

    Red = a share lost (on the diagonal: accuracy lost), blue = a share
    gained (off the diagonal: where those images went now). ``limit`` fixes
    the symmetric colour range (pass one for charts shown side by side);
    by default the smallest of :data:`CHANGE_STEPS` that holds the values.
    """
    diff = confusion_change(after, before)
    limit = change_limit(diff) if limit is None else float(limit)
    names = [str(n) for n in class_names]
    fig = go.Figure(go.Heatmap(z=diff, x=names, y=names, zmin=-limit, zmax=limit, zmid=0, colorscale=CHANGE_SCALE,
                               colorbar=dict(title="Δ % of class<br>red = lost"),
                               hovertemplate="true %{y} → predicted %{x}<br>Δ %{z:.1f} %<extra></extra>"))
    fig.update_layout(title=title, height=420, xaxis_title="predicted", yaxis_title="true",
                      yaxis=dict(autorange="reversed"), margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig


ENTROPY_FLOOR = 1e-8  # nats; a prediction at float precision has entropy ~0, shown in the first bin


def entropy_histograms(groups: dict[str, np.ndarray], title: str, num_classes: int | None = None,
                       y_max: float | None = None, bins: int = 36) -> go.Figure:
    """Histograms of prediction entropy for forget, remaining and test samples, on a log entropy axis.

    Most training samples have an entropy near 0 (1e-6 and 1e-2 nats are both
    "confident", but differ): a linear axis squeezes them into one bar, so the
    bins are even in log10(entropy) from :data:`ENTROPY_FLOOR` to ln(classes).
    Every panel built with the same ``num_classes`` and ``y_max`` shares its
    axes with the others, so heights compare across panels.
    """
    names = {"forget": "forget", "retain": "remaining", "test": "test"}
    colours = {"forget": "#E15759", "retain": "#4E79A7", "test": "#59A14F"}
    top = math.log(num_classes) if num_classes and num_classes > 1 else max(
        (float(np.max(v)) for v in groups.values() if len(v)), default=1.0)
    edges = np.linspace(math.log10(ENTROPY_FLOOR), math.log10(max(top, ENTROPY_FLOOR * 10)), bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    for key, values in groups.items():
        values = np.log10(np.clip(np.asarray(values, dtype=float), ENTROPY_FLOOR, None))
        counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
        share = counts / max(len(values), 1) * 100
        fig.add_trace(go.Bar(x=centres, y=share, width=float(edges[1] - edges[0]), name=names.get(key, key),
                             opacity=0.55, marker_color=colours.get(key),
                             customdata=np.stack([10 ** edges[:-1], 10 ** edges[1:]], axis=1),
                             hovertemplate=f"{names.get(key, key)}: %{{y:.1f}} % of samples<br>entropy "
                                           "%{customdata[0]:.1e} to %{customdata[1]:.1e} nats<extra></extra>"))
    ticks = np.arange(math.ceil(edges[0]), math.floor(edges[-1]) + 1, 2)
    fig.update_layout(barmode="overlay", title=title, yaxis_title="% of samples", height=320,
                      margin=dict(l=10, r=10, t=40, b=10), template="plotly_white",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
                      xaxis=dict(title="prediction entropy (nats, log scale)", range=[edges[0], edges[-1]],
                                 tickvals=list(ticks), ticktext=[f"1e{int(t)}" for t in ticks]))
    if y_max is not None:
        fig.update_yaxes(range=[0, y_max])
    return fig


def entropy_y_max(groups_list: list[dict[str, np.ndarray]], num_classes: int | None, bins: int = 36) -> float:
    """The tallest bar (in %) over several panels of :func:`entropy_histograms`, plus headroom: one shared y axis."""
    tallest = 0.0
    for groups in groups_list:
        figure = entropy_histograms(groups, "", num_classes, bins=bins)
        tallest = max([tallest, *(float(np.max(trace.y)) for trace in figure.data if len(trace.y))])
    return min(100.0, tallest * 1.08 + 1.0)
