"""Figure conventions: fixed symmetric change scales, one colour per method, shared entropy axes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unlearn_core.figures import (CHANGE_SCALE, change_limit, confusion_difference, entropy_histograms,
                                  entropy_y_max, method_colour, per_class_bars, per_class_heatmap)


def test_one_image_does_not_fill_the_confusion_scale():
    before = np.diag([36, 36, 36])
    after = before.copy()
    after[0, 0], after[0, 1] = 35, 1  # one test image of class 0 moved: 2.8 points
    figure = confusion_difference(after, before, ["0", "1", "2"], "t")
    heat = figure.data[0]
    assert heat.zmin == -heat.zmax == -10.0 and heat.zmid == 0  # the smallest step, symmetric: a pale cell
    assert heat.colorscale == confusion_difference(before, after, ["0", "1", "2"], "t").data[0].colorscale
    assert figure.data[0].z[0][0] < 0  # the lost share is the negative (red) end
    assert change_limit([3.0], [-40.0]) == 50.0 and change_limit([]) == 10.0 and change_limit([250.0]) == 100.0
    shared = confusion_difference(after, before, ["0", "1", "2"], "t", limit=50.0).data[0]
    assert shared.zmax == 50.0


def test_loss_is_red_in_every_change_chart():
    shift = pd.DataFrame([[0.0, -30.0]], index=["#1 unsc"], columns=["a", "b"])
    heat = per_class_heatmap(shift).data[0]
    confusion = confusion_difference(np.eye(2) * 5, np.eye(2) * 5, ["a", "b"], "t").data[0]
    # Both use the same scale with the low (negative = lost) end red.
    assert heat.colorscale == confusion.colorscale
    assert CHANGE_SCALE == "RdBu"

    def rgb(colour):
        return [int(v) for v in colour[colour.index("(") + 1:-1].split(",")]

    low, high = rgb(heat.colorscale[0][1]), rgb(heat.colorscale[-1][1])
    assert low[0] > low[2] and high[2] > high[0]  # low end red, high end blue


def test_a_method_has_one_colour_everywhere():
    assert method_colour("unsc") == method_colour("#7 unsc") == method_colour("#12 unsc")
    assert method_colour("unsc") != method_colour("natmu")
    assert method_colour("retrain (reference)") == method_colour("retrain")
    assert method_colour("some_new_method") == method_colour("#3 some_new_method")  # stable for unknown names
    shift = pd.DataFrame(np.zeros((3, 2)), index=["retrain (reference)", "#2 natmu", "#1 unsc"], columns=["a", "b"])
    bars = per_class_bars(shift)
    assert [t.marker.color for t in bars.data] == [method_colour("retrain"), method_colour("natmu"),
                                                   method_colour("unsc")]


def test_entropy_panels_share_axes_and_spread_confident_predictions():
    rng = np.random.default_rng(0)
    confident = {"forget": 10 ** rng.uniform(-7, -5, 200), "retain": 10 ** rng.uniform(-7, -6, 200),
                 "test": 10 ** rng.uniform(-3, -1, 200)}
    unsure = {"forget": rng.uniform(1.0, 2.2, 200), "retain": 10 ** rng.uniform(-7, -6, 200),
              "test": 10 ** rng.uniform(-3, -1, 200)}
    y_max = entropy_y_max([confident, unsure], num_classes=10)
    left = entropy_histograms(confident, "a", 10, y_max)
    right = entropy_histograms(unsure, "b", 10, y_max)
    assert list(left.layout.xaxis.range) == list(right.layout.xaxis.range)
    assert list(left.layout.yaxis.range) == list(right.layout.yaxis.range) == [0, y_max]
    assert right.layout.xaxis.range[1] == np.log10(np.log(10))  # up to the largest possible entropy
    forget = left.data[0]
    # 1e-7..1e-5 nats fall in several bins, not one bar at 0
    assert np.count_nonzero(forget.y) >= 5 and np.isclose(sum(forget.y), 100.0)
    assert "1e-6" in left.layout.xaxis.ticktext


def test_an_all_white_mask_keeps_a_visible_frame():
    from unlearn_core.figures import framed_mask

    picture = framed_mask(np.ones((4, 4)), scale=3)
    assert picture.shape == (16, 16) and picture.dtype == np.uint8
    assert (picture[2:-2, 2:-2] == 255).all() and (picture[0] == 128).all() and (picture[:, -1] == 128).all()


def test_spectrum_ticks_are_plain_exponents():
    from unlearn_core.figures import spectrum_figure

    figure = spectrum_figure([("fc1", np.array([0.9, 0.09, 1e-6]))], 0.99, {"fc1": 2})
    assert figure.layout.yaxis.exponentformat == "e"


def test_one_legend_line_names_every_class_in_its_colour_and_escapes_names():
    from unlearn_core.figures import class_colour, legend_html

    line = legend_html(["cat", "<dog>"], [0, 1], forget=True)
    assert class_colour(0) in line and class_colour(1) in line and "&lt;dog&gt;" in line and "forget set" in line
    assert "<dog>" not in line


def test_spectrum_lines_are_thinned_svg_so_the_eps_slider_redraws_fast():
    from unlearn_core.figures import spectrum_figure

    values = np.sort(np.random.default_rng(0).random(5000))[::-1]
    values /= values.sum()
    figure = spectrum_figure([("conv", values)], 0.99, {"conv": 4000})
    lines = [t for t in figure.data if t.mode == "lines"]
    assert len(lines) == 2 and all(t.type == "scatter" for t in lines)  # SVG, not WebGL
    for line in lines:
        assert len(line.x) <= 300 and line.x[0] == 1 and line.x[-1] == 5000
        assert list(line.x[:100]) == list(range(1, 101))
    assert lines[1].y[-1] == pytest.approx(1.0)


def test_the_eps_view_is_three_vega_charts_and_the_spectrum_one_static_panel():
    from unlearn_core.figures import normalised_spectrum_figure
    from unlearn_core.figures.vega import energy_chart, export_chart, rank_chart, removed_chart

    values = np.array([0.6, 0.3, 0.08, 0.02])
    layers = [("fc1", values), ("fc2", values[::-1] / values.sum())]
    energy = energy_chart(layers, 0.95, {"fc1": 3, "fc2": 4})
    ranks = energy["datasets"]["ranks"]
    assert [(r["layer"], r["direction"]) for r in ranks] == [("fc1", 3), ("fc2", 4)]
    assert ranks[0]["energy"] == pytest.approx(0.98) and ranks[1]["energy"] == pytest.approx(1.0)
    assert energy["datasets"]["eps"] == [{"eps": 0.95, "label": "eps = 0.95"}]
    assert len(energy["datasets"]["lines"]) == 8
    bars = rank_chart(["fc1", "fc2"], [3, 4], [4, 4])["datasets"]["rows"]
    assert bars[0] == {"layer": "fc1", "input dimension": 4, "rank (retained space)": 3}
    removed = removed_chart(["fc1", "fc2"], [87.5, float("nan")])["datasets"]["rows"]
    assert removed[0]["label"] == "87.5 %" and removed[1]["removed"] is None and removed[1]["label"] == "–"
    # The download renders the very spec offline: an SVG holding the eps label, a PNG at 2x.
    svg = export_chart(energy, "svg").decode()
    assert svg.startswith("<svg") and "eps = 0.95" in svg
    png = export_chart(energy, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") >= 2 * 300
    with pytest.raises(ValueError, match="png, svg"):
        export_chart(energy, "jpg")
    spectrum = normalised_spectrum_figure(layers)
    assert "xaxis2" not in spectrum.to_dict()["layout"] and not spectrum.layout.shapes
    assert [t.name for t in spectrum.data] == ["fc1", "fc2"] and list(spectrum.data[0].y) == list(values)


HALF_IMPORTED_PANDAS = """
import importlib.abc, importlib.util, sys, threading
import numpy as np
started, release = threading.Event(), threading.Event()

class Pause(importlib.abc.MetaPathFinder):
    '''pandas' import stops halfway, its module already in sys.modules: another thread importing it.'''
    def find_spec(self, name, path, target=None):
        if name != "pandas":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("pandas")
        real = spec.loader
        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return real.create_module(spec)
            def exec_module(self, module):
                started.set(); release.wait(); real.exec_module(module)
        spec.loader = Loader()
        return spec

sys.meta_path.insert(0, Pause())
threading.Thread(target=lambda: __import__("pandas"), daemon=True).start()
started.wait()
import plotly.graph_objects as go
try:
    go.Figure().add_bar(x=["0", "1"], y=[3, 2])
    direct = "built"
except AttributeError:
    direct = "AttributeError"
threading.Timer(0.5, release.set).start()
from unlearn_core.figures import forget_counts_figure
figure = forget_counts_figure(["0", "1"], np.array([5, 4]), {1: 3})
print(direct, [list(trace.y) for trace in figure.data])
"""


def test_a_figure_built_while_another_thread_imports_pandas_waits_for_it():
    """The server's warm-up thread imports pandas while a visitor's page runs; plotly reads pandas from
    ``sys.modules`` without importing it, so a figure built with plotly directly then fails on the half-imported
    module (as the Forget page did in CI). Built through ``unlearn_core.figures``, whose import completes pandas'
    import first, it waits and succeeds."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-c", HALF_IMPORTED_PANDAS], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "AttributeError [[5, 1], [0, 3]]"


def test_pages_build_plotly_figures_only_through_unlearn_core_figures():
    from pathlib import Path

    pages = Path(__file__).resolve().parents[2] / "app_pages"
    direct = [str(path.relative_to(pages)) for path in pages.rglob("*.py")
              if "import plotly" in path.read_text() or "from plotly" in path.read_text()]
    assert direct == []
