"""Figures of UNSC's retained subspaces: each layer's eigenvalue spectrum, its cumulative energy with the eps
threshold, and the retained-space rank against the input dimension."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from unlearn_core.figures.style import PALETTE


def thinned_indices(values: np.ndarray) -> np.ndarray:
    """Indices of at most ~300 points of a spectrum, log-spaced like its x axis (every direction up to 100 kept).

    The eps slider redraws these lines: thousands of WebGL points took about 1 s per key press in Chromium
    without a GPU (docs/APP.md); SVG lines of this size redraw in a fraction of that.
    """
    return np.unique(np.concatenate([np.arange(min(len(values), 100)),
                                     np.geomspace(1, len(values), 200).astype(int) - 1]))


def _spectrum_traces(layers: list[tuple[str, np.ndarray]], eps: float | None, ranks: dict[str, int] | None,
                     normalised: bool, energy: bool):
    """Per layer (name, colour, kept x, spectrum trace, energy trace, rank marker trace or None)."""
    for i, (name, values) in enumerate(layers):
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            continue
        cumulative = np.cumsum(values)
        colour = PALETTE[i % len(PALETTE)]
        keep = thinned_indices(values)
        x = keep + 1
        out = []
        if normalised:
            out.append(go.Scatter(x=x, y=np.maximum(values[keep], 1e-16), name=name, line=dict(color=colour),
                                  legendgroup=name, mode="lines"))
        if energy:
            out.append(go.Scatter(x=x, y=cumulative[keep], name=name, line=dict(color=colour), legendgroup=name,
                                  showlegend=not normalised, mode="lines"))
            rank = (ranks or {}).get(name, 0)
            if rank > 0:
                out.append(go.Scatter(x=[rank], y=[cumulative[rank - 1]], mode="markers", legendgroup=name,
                                      showlegend=False, marker=dict(color=colour, size=10, symbol="diamond"),
                                      hovertemplate=f"{name}: rank {rank}<extra></extra>"))
        yield out


def spectrum_figure(layers: list[tuple[str, np.ndarray]], eps: float, ranks: dict[str, int]) -> go.Figure:
    """Per layer: normalised squared singular values S_i^2 / sum S^2 (log) and the cumulative energy with eps.

    ``layers`` holds ``(name, normalised spectrum)``; a marker on each energy
    curve shows the rank that ``eps`` picks. Two panels in one figure (the
    report's); the dashboard draws them apart (:func:`normalised_spectrum_figure` and
    :func:`unlearn_core.figures.vega.energy_chart`) so the eps slider redraws only the second.
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("normalised spectrum Sᵢ² / ΣS² (log)",
                                                        "cumulative energy and the eps threshold"))
    for spectrum, *energy in _spectrum_traces(layers, eps, ranks, normalised=True, energy=True):
        fig.add_trace(spectrum, row=1, col=1)
        for trace in energy:
            fig.add_trace(trace, row=1, col=2)
    fig.add_hline(y=eps, line_dash="dash", line_color="black", row=1, col=2, annotation_text=f"eps = {eps:g}")
    # exponentformat "e": plain 1e-6 tick labels, not SI prefixes ("1μ") that read as micro-units.
    fig.update_yaxes(type="log", exponentformat="e", row=1, col=1)
    fig.update_xaxes(type="log", title_text="direction i", row=1, col=1)
    fig.update_xaxes(type="log", title_text="direction i", row=1, col=2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig


def normalised_spectrum_figure(layers: list[tuple[str, np.ndarray]]) -> go.Figure:
    """Per layer: the normalised squared singular values S_i^2 / sum S^2 against the direction i (log-log).

    It does not depend on eps, so the dashboard draws it outside the eps slider's fragment.
    """
    fig = go.Figure([trace for traces in _spectrum_traces(layers, None, None, normalised=True, energy=False)
                     for trace in traces])
    fig.update_yaxes(type="log", exponentformat="e", title_text="Sᵢ² / ΣS²")
    fig.update_xaxes(type="log", title_text="direction i")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10), template="plotly_white")
    return fig


def rank_bars(names: list[str], ranks: list[int], dims: list[int]) -> go.Figure:
    """Per layer: the retained-space rank against the input dimension (the gap is the null space)."""
    fig = go.Figure()
    fig.add_trace(go.Bar(name="input dimension", x=names, y=dims, marker_color="#BAB0AC"))
    fig.add_trace(go.Bar(name="rank (retained space)", x=names, y=ranks, marker_color="#4E79A7"))
    fig.update_layout(barmode="overlay", height=320, yaxis_title="dimensions", margin=dict(l=10, r=10, t=30, b=10),
                      template="plotly_white")
    return fig


def subspace_rank_bars(rows: list[dict]) -> go.Figure:
    """Per layer: the dimension of what each method keeps or removes, beside the layer's input dimension.

    ``rows`` are :meth:`unlearn_core.subspaces.SubspaceComparison.rows`: UNSC's retained space (kept), the SVD
    method's class-discriminatory directions and ESC's erased directions (removed; ESC at the head only).
    """
    from unlearn_core.figures.style import method_colour

    names = [row["layer"] for row in rows]
    fig = go.Figure()
    for key, label, method in (("unsc_rank", "UNSC: retained (kept)", "unsc"),
                               ("svd_rank", "SVD forgetting: removed", "svd_forget"),
                               ("esc_rank", "ESC: erased", "esc")):
        values = [row.get(key) for row in rows]
        fig.add_trace(go.Bar(x=names, y=[v if v is not None else 0 for v in values], name=label,
                             marker_color=method_colour(method),
                             text=["" if v is None else str(v) for v in values], textposition="outside",
                             cliponaxis=False))
    fig.add_trace(go.Scatter(x=names, y=[row["input_dim"] for row in rows], mode="markers", name="input dimension",
                             marker=dict(symbol="line-ew-open", size=28, color="#444")))
    fig.update_layout(barmode="group", height=340, yaxis=dict(title="dimension", type="log"),
                      margin=dict(l=10, r=10, t=30, b=10), template="plotly_white",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def subspace_overlap_bars(rows: list[dict]) -> go.Figure:
    """Per layer, for each removed subspace: the share of it inside UNSC's retained space, and the share of the
    remaining and of the forget data's input energy that lies in it (all in %)."""
    from unlearn_core.figures.style import method_colour

    names = [row["layer"] for row in rows]
    fig = go.Figure()
    svd, esc = method_colour("svd_forget"), method_colour("esc")
    series = (("svd_in_unsc", "SVD removed ∩ UNSC retained", svd, None),
              ("svd_retain_energy", "remaining energy in SVD removed", svd, "/"),
              ("svd_forget_energy", "forget energy in SVD removed", svd, "x"),
              ("esc_in_unsc", "ESC erased ∩ UNSC retained", esc, None),
              ("esc_retain_energy", "remaining energy in ESC erased", esc, "/"),
              ("esc_forget_energy", "forget energy in ESC erased", esc, "x"))
    for key, label, colour, pattern in series:
        values = [row.get(key) for row in rows]
        if all(v is None for v in values):
            continue
        fig.add_trace(go.Bar(x=names, y=[None if v is None else 100 * v for v in values], name=label,
                             marker=dict(color=colour, pattern_shape=pattern or "")))
    fig.update_layout(barmode="group", height=340, yaxis=dict(title="%", range=[0, 105]),
                      margin=dict(l=10, r=10, t=30, b=10), template="plotly_white",
                      legend=dict(orientation="h", y=-0.2))
    return fig
