"""Plotly figures for the dashboard, built from plain arrays (no Streamlit).

Keeping the figure builders here lets tests check the traces directly on
``go.Figure`` objects, which AppTest cannot render.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# A 10-colour qualitative palette (Tableau 10) so classes stay distinguishable.
PALETTE = ["#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7", "#9C755F",
           "#BAB0AC"]
# One colour convention for change across the app: red = lost (accuracy, share of a class), blue = gained.
# Plotly's "RdBu" maps the low end to red, so every change chart uses it with a symmetric range around 0.
CHANGE_SCALE = "RdBu"
# Symmetric limits snap to these steps, so a single test image never fills the scale and charts compare.
CHANGE_STEPS = (10.0, 25.0, 50.0, 100.0)

# One colour per method everywhere (bars, lines, markers), distinct from the class palette's order so a
# method is never read as a class. Unknown methods get a stable colour from their name.
METHOD_COLOURS = {
    "retrain": "#7F7F7F", "original": "#C7C7C7", "unsc": "#1F77B4", "natmu": "#D62728", "finetune": "#2CA02C",
    "ga": "#FF7F0E", "neggrad_plus": "#9467BD", "rl": "#8C564B", "bs": "#E377C2", "bs_nearest_wrong": "#F7B6D2",
    "l1_sparse": "#BCBD22", "salun": "#17BECF", "scrub": "#393B79", "ssd": "#AD494A", "bad_teacher": "#637939",
}
_EXTRA_METHOD_COLOURS = ("#843C39", "#7B4173", "#3182BD", "#E6550D", "#31A354", "#756BB1", "#636363", "#9C9EDE")


def class_colour(cls: int) -> str:
    return PALETTE[int(cls) % len(PALETTE)]


def method_colour(method: str) -> str:
    """The one colour of a method (``"unsc"``, ``"#3 unsc"`` and ``"retrain (reference)"`` all work)."""
    name = str(method).strip()
    if name.startswith("#"):
        name = name.split(" ", 1)[-1]
    name = name.split(" ")[0]
    if name in METHOD_COLOURS:
        return METHOD_COLOURS[name]
    import zlib

    return _EXTRA_METHOD_COLOURS[zlib.crc32(name.encode()) % len(_EXTRA_METHOD_COLOURS)]


def change_limit(*arrays, steps=CHANGE_STEPS) -> float:
    """The smallest step that holds every |value|: a fixed, symmetric colour range with a minimum size."""
    values = [np.abs(np.asarray(a, dtype=float)) for a in arrays if np.size(a)]
    largest = max((float(np.nanmax(v)) for v in values if np.isfinite(v).any()), default=0.0)
    return next((step for step in steps if largest <= step), float(steps[-1]))


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


def legend_html(class_names: list[str], classes, prefix: str = "", forget: bool = True) -> str:
    """One compact legend line (coloured squares and names) for several narrow panels that share colours.

    Three plotly legends beside 300-pixel panels took half of each panel at a 1024 px window; one line
    under the panels takes one row. Names are escaped: image-folder class names come from the user.
    """
    import html

    items = [f'<span style="color:{class_colour(c)}">■</span>&nbsp;{html.escape(prefix + str(class_names[int(c)]))}'
             for c in classes]
    if forget:
        items.append("<b>×</b>&nbsp;forget set")
    return '<span style="font-size:0.85em">' + " &nbsp; ".join(items) + "</span>"


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

    ``band`` (``sweep_views.ensemble_band``: ``k``, ``low``, ``high`` per class) draws a retrained ensemble's
    spread behind each class's bars: a bar inside the grey band is within what retraining itself varies by.
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
        # At most ~300 points per line, log-spaced like the x axis (every direction up to 100 is kept): the
        # eps slider redraws this figure, and thousands of WebGL points took about 1 s per key press in
        # Chromium without a GPU (docs/APP.md); SVG lines of this size redraw in a fraction of that.
        keep = np.unique(np.concatenate([np.arange(min(len(values), 100)),
                                         np.geomspace(1, len(values), 200).astype(int) - 1]))
        x = keep + 1
        fig.add_trace(go.Scatter(x=x, y=np.maximum(values[keep], 1e-16), name=name, line=dict(color=colour),
                                 legendgroup=name, mode="lines"), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=energy[keep], name=name, line=dict(color=colour), legendgroup=name,
                                 showlegend=False, mode="lines"), row=1, col=2)
        rank = ranks.get(name, 0)
        if rank > 0:
            fig.add_trace(go.Scatter(x=[rank], y=[energy[rank - 1]], mode="markers", legendgroup=name,
                                     showlegend=False, marker=dict(color=colour, size=10, symbol="diamond"),
                                     hovertemplate=f"{name}: rank {rank}<extra></extra>"), row=1, col=2)
    fig.add_hline(y=eps, line_dash="dash", line_color="black", row=1, col=2, annotation_text=f"eps = {eps:g}")
    # exponentformat "e": plain 1e-6 tick labels, not SI prefixes ("1μ") that read as micro-units.
    fig.update_yaxes(type="log", exponentformat="e", row=1, col=1)
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


def framed_mask(mask: np.ndarray, scale: int = 1, frame: int = 2) -> np.ndarray:
    """A ``[0, 1]`` mask as an upscaled ``uint8`` picture inside a grey frame.

    At delta = 1 every mask is all white: without a frame it vanishes into a white page.
    """
    picture = np.repeat(np.repeat((np.clip(mask, 0, 1) * 255).astype(np.uint8), scale, 0), scale, 1)
    return np.pad(picture, frame, constant_values=128)


def loss_curve(points: list[tuple[float, float]], title: str = "loss") -> go.Figure:
    fig = go.Figure(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers"))
    fig.update_layout(title=title, height=220, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="progress",
                      template="plotly_white")
    return fig
