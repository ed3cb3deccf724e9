"""Plotly figures for the dashboard, built from plain arrays (no Streamlit).

Keeping the figure builders here lets tests check the traces directly on
``go.Figure`` objects, which AppTest cannot render.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# A 10-colour qualitative palette (Tableau 10) so classes stay distinguishable.
PALETTE = ["#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7", "#9C755F",
           "#BAB0AC"]
FORGET_COLOUR = "#111111"


def class_colour(cls: int) -> str:
    return PALETTE[int(cls) % len(PALETTE)]


def prediction_hover(probs_by_state: dict[str, np.ndarray], class_names: list[str]) -> np.ndarray:
    """One hover line per point: each model's predicted class and confidence, e.g. ``before: 3 (99%) · after: 5``."""
    parts = []
    for state, probs in probs_by_state.items():
        predicted = probs.argmax(1)
        confidence = np.rint(probs.max(1) * 100).astype(int)
        parts.append([f"{state}: {class_names[int(c)]} ({p}%)" for c, p in zip(predicted, confidence)])
    return np.asarray([" · ".join(row) for row in zip(*parts)], dtype=object)


def shared_ranges(*coord_sets: np.ndarray, pad: float = 0.04) -> tuple[list[float], list[float]]:
    """One x and one y range that hold every point of every panel, so side-by-side panels share their axes."""
    points = np.concatenate([np.asarray(c, dtype=float).reshape(-1, 2) for c in coord_sets if len(c)])
    low, high = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
    span = np.maximum(high - low, 1e-9)
    return ([float(low[0] - pad * span[0]), float(high[0] + pad * span[0])],
            [float(low[1] - pad * span[1]), float(high[1] + pad * span[1])])


def embedding_scatter(coords: np.ndarray, labels: np.ndarray, indices: np.ndarray, forget_mask: np.ndarray,
                      class_names: list[str], title: str = "", selectable: bool = False,
                      ghost: np.ndarray | None = None, height: int = 480,
                      hover: np.ndarray | None = None, colour_by: np.ndarray | None = None,
                      colour_title: str = "class", ranges: tuple | None = None,
                      show_legend: bool = True) -> go.Figure:
    """Points coloured by class, forget samples as small crosses; ``customdata`` carries the dataset index.

    ``colour_by`` (one class per point, e.g. the model's predictions) colours
    the points instead of their true ``labels``; the tooltip always names the
    true class. ``ranges`` (``(x_range, y_range)``, see :func:`shared_ranges`)
    fixes the axes so several panels can be compared point for point.
    ``ghost`` (same shape as ``coords``) draws another state's positions in
    light grey behind, so the eye sees where points came from. ``hover`` adds
    one line of text per point to its tooltip (see :func:`prediction_hover`).
    The legend sits below the plot in one or two rows, so it never takes the
    width of a narrow panel.
    """
    labels = np.asarray(labels)
    colours = labels if colour_by is None else np.asarray(colour_by)
    indices = np.asarray(indices)
    true_text = np.asarray([f"true {class_names[int(c)]}" for c in labels], dtype=object)
    if hover is not None:
        true_text = np.asarray([f"{t}<br>{h}" for t, h in zip(true_text, np.asarray(hover, dtype=object))],
                               dtype=object)

    fig = go.Figure()
    if ghost is not None:
        fig.add_trace(go.Scattergl(x=ghost[:, 0], y=ghost[:, 1], mode="markers", name="other state",
                                   marker=dict(size=4, color="rgba(160,160,160,0.25)"), hoverinfo="skip",
                                   customdata=indices))
    prefix = "" if colour_by is None else "predicted "
    for cls in np.unique(colours):
        keep = (colours == cls) & ~forget_mask
        if keep.any():
            fig.add_trace(go.Scattergl(
                x=coords[keep, 0], y=coords[keep, 1], mode="markers", name=f"{prefix}{class_names[int(cls)]}",
                legendgroup=str(cls), marker=dict(size=5, color=class_colour(cls), opacity=0.75),
                customdata=indices[keep], text=true_text[keep],
                hovertemplate="sample %{customdata}<br>%{text}<extra></extra>"))
    if forget_mask.any():
        # Small crosses in the point's own colour with a faint outline: marked, but the clusters stay readable.
        fig.add_trace(go.Scattergl(
            x=coords[forget_mask, 0], y=coords[forget_mask, 1], mode="markers", name="forget set (×)",
            marker=dict(size=6, color=[class_colour(c) for c in colours[forget_mask]], symbol="x", opacity=0.9,
                        line=dict(width=0.5, color="rgba(0,0,0,0.4)")),
            customdata=indices[forget_mask], text=true_text[forget_mask],
            hovertemplate="FORGET sample %{customdata}<br>%{text}<extra></extra>"))
    axis = dict(showticklabels=False, title=None, zeroline=False)
    x_axis, y_axis = dict(axis), dict(axis)
    if ranges is not None:
        x_axis["range"], y_axis["range"] = list(ranges[0]), list(ranges[1])
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(title_text=colour_title, orientation="h", yanchor="top", y=-0.02, x=0,
                                  font=dict(size=10), itemsizing="constant"),
                      showlegend=show_legend, xaxis=x_axis, yaxis=y_axis,
                      dragmode="lasso" if selectable else "zoom", template="plotly_white")
    return fig


def per_class_heatmap(shift: pd.DataFrame, forgotten: tuple[int, ...] = ()) -> go.Figure:
    """Method x class change in test accuracy (points); red = lost accuracy. Forgotten classes are marked."""
    columns = [f"{c} (forgotten)" if i in set(forgotten) else str(c) for i, c in enumerate(shift.columns)]
    values = shift.to_numpy(dtype=float)
    limit = max(5.0, float(np.nanmax(np.abs(values))) if values.size else 5.0)
    fig = go.Figure(go.Heatmap(z=values, x=columns, y=list(shift.index), zmin=-limit, zmax=limit,
                               colorscale="RdBu", colorbar=dict(title="Δ acc (pts)"),
                               text=np.round(values, 1), texttemplate="%{text}",
                               hovertemplate="%{y}<br>class %{x}<br>Δ %{z:.1f} pts<extra></extra>"))
    fig.update_layout(title="Per-class test accuracy change vs the original", height=120 + 40 * len(shift),
                      margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(autorange="reversed"), template="plotly_white")
    return fig


def per_class_bars(shift: pd.DataFrame, forgotten: tuple[int, ...] = ()) -> go.Figure:
    """Grouped bars of the same change; bars of retained classes that fell are the over-unlearning signal."""
    fig = go.Figure()
    for i, (label, row) in enumerate(shift.iterrows()):
        fig.add_trace(go.Bar(name=str(label), x=[str(c) for c in shift.columns], y=row.to_numpy(dtype=float),
                             marker_color=PALETTE[i % len(PALETTE)]))
    for cls in forgotten:
        fig.add_vrect(x0=cls - 0.5, x1=cls + 0.5, fillcolor="grey", opacity=0.15, line_width=0,
                      annotation_text="forgotten", annotation_position="top left")
    fig.update_layout(barmode="group", height=380, yaxis_title="Δ test accuracy (points)", xaxis_title="class",
                      margin=dict(l=10, r=10, t=30, b=10), template="plotly_white")
    return fig


def confusion_difference(after: np.ndarray, before: np.ndarray, class_names: list[str], title: str) -> go.Figure:
    """Row-normalised confusion (after) minus (before), in percent of each true class."""
    def normalise(matrix):
        rows = matrix.sum(axis=1, keepdims=True).astype(float)
        return np.divide(matrix * 100.0, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)

    diff = normalise(after) - normalise(before)
    limit = max(1.0, float(np.abs(diff).max()))
    names = [str(n) for n in class_names]
    fig = go.Figure(go.Heatmap(z=diff, x=names, y=names, zmin=-limit, zmax=limit, colorscale="RdBu_r",
                               colorbar=dict(title="Δ %"),
                               hovertemplate="true %{y} → predicted %{x}<br>Δ %{z:.1f} %<extra></extra>"))
    fig.update_layout(title=title, height=420, xaxis_title="predicted", yaxis_title="true",
                      yaxis=dict(autorange="reversed"), margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig


def entropy_histograms(groups: dict[str, np.ndarray], title: str) -> go.Figure:
    """Overlaid histograms of prediction entropy for forget, remaining and test samples."""
    names = {"forget": "forget", "retain": "remaining", "test": "test"}
    colours = {"forget": "#E15759", "retain": "#4E79A7", "test": "#59A14F"}
    fig = go.Figure()
    for key, values in groups.items():
        fig.add_trace(go.Histogram(x=values, name=names.get(key, key), histnorm="probability", opacity=0.6,
                                   marker_color=colours.get(key), nbinsx=40))
    fig.update_layout(barmode="overlay", title=title, xaxis_title="prediction entropy (nats)",
                      yaxis_title="share of samples", height=320, margin=dict(l=10, r=10, t=40, b=10),
                      template="plotly_white")
    return fig


def spectrum_figure(layers: list[tuple[str, np.ndarray]], eps: float, ranks: dict[str, int]) -> go.Figure:
    """Per layer: normalised squared singular values S_i^2 / sum S^2 (log) and the cumulative energy with eps.

    ``layers`` holds ``(name, normalised spectrum)``; a marker on each energy
    curve shows the rank that ``eps`` picks.
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("normalised spectrum Sᵢ² / ΣS² (log)",
                                                        "cumulative energy and the eps threshold"))
    for i, (name, values) in enumerate(layers):
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            continue
        energy = np.cumsum(values)
        colour = PALETTE[i % len(PALETTE)]
        x = np.arange(1, len(values) + 1)
        fig.add_trace(go.Scattergl(x=x, y=np.maximum(values, 1e-16), name=name, line=dict(color=colour),
                                   legendgroup=name, mode="lines"), row=1, col=1)
        fig.add_trace(go.Scattergl(x=x, y=energy, name=name, line=dict(color=colour), legendgroup=name,
                                   showlegend=False, mode="lines"), row=1, col=2)
        rank = ranks.get(name, 0)
        if rank > 0:
            fig.add_trace(go.Scatter(x=[rank], y=[energy[rank - 1]], mode="markers", legendgroup=name,
                                     showlegend=False, marker=dict(color=colour, size=10, symbol="diamond"),
                                     hovertemplate=f"{name}: rank {rank}<extra></extra>"), row=1, col=2)
    fig.add_hline(y=eps, line_dash="dash", line_color="black", row=1, col=2, annotation_text=f"eps = {eps:g}")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(type="log", title_text="direction i", row=1, col=1)
    fig.update_xaxes(type="log", title_text="direction i", row=1, col=2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig


def rank_bars(names: list[str], ranks: list[int], dims: list[int]) -> go.Figure:
    """Per layer: the retained-space rank against the input dimension (the gap is the null space)."""
    fig = go.Figure()
    fig.add_trace(go.Bar(name="input dimension", x=names, y=dims, marker_color="#BAB0AC"))
    fig.add_trace(go.Bar(name="rank (retained space)", x=names, y=ranks, marker_color="#4E79A7"))
    fig.update_layout(barmode="overlay", height=320, yaxis_title="dimensions", margin=dict(l=10, r=10, t=30, b=10),
                      template="plotly_white")
    return fig


def loss_curve(points: list[tuple[float, float]], title: str = "loss") -> go.Figure:
    fig = go.Figure(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers"))
    fig.update_layout(title=title, height=220, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="progress",
                      template="plotly_white")
    return fig
