"""Vega-Lite charts of UNSC's retained space at one eps, for views that redraw on every slider step.

Three charts depend on eps: the cumulative energy per layer with the eps threshold (:func:`energy_chart`),
the retained rank against the input dimension (:func:`rank_chart`) and the share of the forget-set gradient
the projection removes (:func:`removed_chart`). They are Vega-Lite specs, not plotly figures: in Chromium
without a GPU, a key press on the eps slider redrew three plotly figures in about 290 ms and these three
charts in about 110 ms (benchmarks/bench_app_browser.py, docs/APP.md). Each spec carries its rows as named
``datasets`` (lists of records), so the dashboard ships them as Arrow tables and :func:`export_chart` renders
the same spec to SVG or PNG (at :data:`unlearn_core.slides.PNG_SCALE` x) offline with ``vl-convert``.
"""

from __future__ import annotations

import numpy as np

from unlearn_core.errors import UnlearnError
from unlearn_core.figures.nullspace import thinned_indices
from unlearn_core.figures.style import PALETTE

FONT = "Source Sans Pro, sans-serif"


def _layer_colours(names: list[str]) -> dict:
    return {"domain": list(names), "range": [PALETTE[i % len(PALETTE)] for i in range(len(names))]}


def _base(height: int) -> dict:
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "height": height,
            "config": {"font": FONT, "view": {"stroke": None}, "axis": {"gridColor": "#EBF0F8"}}}


def energy_chart(layers: list[tuple[str, np.ndarray]], eps: float, ranks: dict[str, int]) -> dict:
    """Per layer: the cumulative energy ``E_i = sum_{j<=i} S_j^2 / sum S^2`` against the direction ``i`` (log x),
    the eps threshold as a dashed rule and a diamond at the rank eps picks (the smallest ``i`` with
    ``E_i >= eps``). Lines keep at most ~300 points per layer (log-spaced, every direction up to 100)."""
    lines, marks, names = [], [], []
    for name, values in layers:
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            continue
        names.append(name)
        energy = np.cumsum(values)
        keep = thinned_indices(values)
        lines.extend({"layer": name, "direction": int(i) + 1, "energy": float(energy[i])} for i in keep)
        rank = int(ranks.get(name, 0))
        if rank > 0:
            marks.append({"layer": name, "direction": rank, "energy": float(energy[rank - 1]),
                          "label": f"{name}: rank {rank}"})
    colour = {"field": "layer", "type": "nominal", "scale": _layer_colours(names), "title": "layer"}
    x = {"field": "direction", "type": "quantitative", "scale": {"type": "log", "nice": False}, "title": "direction i"}
    y = {"field": "energy", "type": "quantitative", "title": "cumulative energy", "scale": {"domain": [0, 1.02]}}
    return {**_base(320), "datasets": {"lines": lines, "ranks": marks, "eps": [{"eps": float(eps),
                                                                                  "label": f"eps = {eps:g}"}]},
            "layer": [
                {"data": {"name": "lines"}, "mark": {"type": "line", "strokeWidth": 2},
                 "encoding": {"x": x, "y": y, "color": colour,
                              "tooltip": [{"field": "layer"}, {"field": "direction"},
                                          {"field": "energy", "format": ".4f"}]}},
                {"data": {"name": "ranks"}, "mark": {"type": "point", "shape": "diamond", "size": 120,
                                                     "filled": True, "opacity": 1},
                 "encoding": {"x": x, "y": y, "color": colour, "tooltip": [{"field": "label", "title": "rank"}]}},
                {"data": {"name": "eps"}, "mark": {"type": "rule", "strokeDash": [5, 4], "color": "black"},
                 "encoding": {"y": {"field": "eps", "type": "quantitative"}}},
                {"data": {"name": "eps"}, "mark": {"type": "text", "align": "left", "dx": 4, "dy": -7,
                                                   "color": "black"},
                 "encoding": {"y": {"field": "eps", "type": "quantitative"}, "x": {"value": 0},
                              "text": {"field": "label"}}},
            ]}


def rank_chart(names: list[str], ranks: list[int], dims: list[int]) -> dict:
    """Per layer: the input dimension (grey) with the retained-space rank over it (blue); the gap is the null
    space, where UNSC may change the layer."""
    rows = [{"layer": n, "input dimension": int(d), "rank (retained space)": int(r)}
            for n, r, d in zip(names, ranks, dims)]
    x = {"field": "layer", "type": "nominal", "sort": list(names), "axis": {"labelAngle": 0}, "title": None}
    return {**_base(300), "datasets": {"rows": rows}, "data": {"name": "rows"},
            "transform": [{"fold": ["input dimension", "rank (retained space)"], "as": ["what", "dimensions"]}],
            "mark": {"type": "bar"},
            "encoding": {"x": x, "y": {"field": "dimensions", "type": "quantitative", "stack": None},
                         "color": {"field": "what", "type": "nominal", "title": None,
                                   "scale": {"domain": ["input dimension", "rank (retained space)"],
                                             "range": ["#BAB0AC", "#4E79A7"]},
                                   "legend": {"orient": "top"}},
                         "order": {"field": "what", "sort": "ascending"},
                         "tooltip": [{"field": "layer"}, {"field": "what"}, {"field": "dimensions"}]}}


def removed_chart(names: list[str], removed_percent: list[float]) -> dict:
    """Per layer: the percentage of the forget set's gradient that lies in the retained space, i.e. what UNSC's
    projection removes (axis to 115 % so a label over a full bar stays readable; NaN for a layer without one)."""
    rows = [{"layer": n, "removed": None if not np.isfinite(v) else float(v),
             "label": "–" if not np.isfinite(v) else f"{v:.1f} %"} for n, v in zip(names, removed_percent)]
    x = {"field": "layer", "type": "nominal", "sort": list(names), "axis": {"labelAngle": 0}, "title": None}
    y = {"field": "removed", "type": "quantitative", "title": "% of forget gradient removed",
         "scale": {"domain": [0, 115]}, "axis": {"values": [0, 25, 50, 75, 100]}}
    return {**_base(300), "datasets": {"rows": rows}, "data": {"name": "rows"},
            "layer": [{"mark": {"type": "bar", "color": "#E15759"},
                       "encoding": {"x": x, "y": y, "tooltip": [{"field": "layer"}, {"field": "label"}]}},
                      {"mark": {"type": "text", "dy": -8}, "encoding": {"x": x, "y": y, "text": {"field": "label"}}}]}


def export_chart(spec: dict, fmt: str) -> bytes:
    """``spec`` rendered offline (``vl-convert``) as SVG, or as PNG at :data:`unlearn_core.slides.PNG_SCALE` x."""
    from unlearn_core.slides import FORMATS, PNG_SCALE

    if fmt not in FORMATS:
        raise ValueError(f"download format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        import vl_convert
    except ImportError:
        raise UnlearnError("exporting this chart needs vl-convert-python (pip install vl-convert-python)") from None
    spec = {**spec, "background": "white"}
    if fmt == "svg":
        return vl_convert.vegalite_to_svg(spec).encode("utf-8")
    return vl_convert.vegalite_to_png(spec, scale=PNG_SCALE)
