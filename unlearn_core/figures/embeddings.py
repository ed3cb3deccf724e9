"""The embedding map: a scatter of 2-D coordinates per class with the forget set marked, its hover text and
shared axis ranges, and an HTML legend of class colours."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from unlearn_core.figures.style import class_colour


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
                      show_legend: bool = True, webgl: bool = True) -> go.Figure:
    """Points coloured by class, forget samples as small crosses; ``customdata`` carries the dataset index.

    ``colour_by`` (one class per point, e.g. the model's predictions) colours
    the points instead of their true ``labels``; the tooltip always names the
    true class. ``ranges`` (``(x_range, y_range)``, see :func:`shared_ranges`)
    fixes the axes so several panels can be compared point for point.
    ``ghost`` (same shape as ``coords``) draws another state's positions in
    light grey behind, so the eye sees where points came from. ``hover`` adds
    one line of text per point to its tooltip (see :func:`prediction_hover`).
    The legend sits below the plot in one or two rows, so it never takes the
    width of a narrow panel. ``webgl`` draws the points in WebGL
    (``go.Scattergl``), else in SVG (``go.Scatter``): inside Streamlit in
    Chromium, three 2,000-point panels drew in about the same time either
    way (benchmarks/bench_map_panels.py, docs/APP.md), and WebGL holds
    larger maps.
    """
    labels = np.asarray(labels)
    colours = labels if colour_by is None else np.asarray(colour_by)
    indices = np.asarray(indices)
    true_text = np.asarray([f"true {class_names[int(c)]}" for c in labels], dtype=object)
    if hover is not None:
        true_text = np.asarray([f"{t}<br>{h}" for t, h in zip(true_text, np.asarray(hover, dtype=object))],
                               dtype=object)

    scatter = go.Scattergl if webgl else go.Scatter
    fig = go.Figure()
    if ghost is not None:
        fig.add_trace(scatter(x=ghost[:, 0], y=ghost[:, 1], mode="markers", name="other state",
                              marker=dict(size=4, color="rgba(160,160,160,0.25)"), hoverinfo="skip",
                              customdata=indices))
    prefix = "" if colour_by is None else "predicted "
    for cls in np.unique(colours):
        keep = (colours == cls) & ~forget_mask
        if keep.any():
            fig.add_trace(scatter(
                x=coords[keep, 0], y=coords[keep, 1], mode="markers", name=f"{prefix}{class_names[int(cls)]}",
                legendgroup=str(cls), marker=dict(size=5, color=class_colour(cls), opacity=0.75),
                customdata=indices[keep], text=true_text[keep],
                hovertemplate="sample %{customdata}<br>%{text}<extra></extra>"))
    if forget_mask.any():
        # Small crosses in the point's own colour with a faint outline: marked, but the clusters stay readable.
        fig.add_trace(scatter(
            x=coords[forget_mask, 0], y=coords[forget_mask, 1], mode="markers", name="forget set (×)",
            marker=dict(size=6, color=[class_colour(c) for c in colours[forget_mask]], symbol="x", opacity=0.9,
                        line=dict(width=0.5, color="rgba(0,0,0,0.4)")),
            customdata=indices[forget_mask], text=true_text[forget_mask],
            hovertemplate="FORGET sample %{customdata}<br>%{text}<extra></extra>"))
    axis = dict(showticklabels=False, title=None, zeroline=False)
    x_axis, y_axis = dict(axis), dict(axis)
    if ranges is not None:
        x_axis["range"], y_axis["range"] = list(ranges[0]), list(ranges[1])
    # The title sits left and plotly's toolbar stands upright in a right margin of its own, so on a narrow panel
    # (three side by side at 1280x720) the toolbar never covers the title.
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left"), height=height,
                      margin=dict(l=10, r=34, t=40, b=10), modebar=dict(orientation="v"),
                      legend=dict(title_text=colour_title, orientation="h", yanchor="top", y=-0.02, x=0,
                                  font=dict(size=10), itemsizing="constant"),
                      showlegend=show_legend, xaxis=x_axis, yaxis=y_axis,
                      dragmode="lasso" if selectable else "zoom", template="plotly_white")
    return fig
