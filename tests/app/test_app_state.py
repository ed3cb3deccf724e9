"""The library's tables, over-unlearning and best-cell rules and figures, and the app's forget specs and thumbnails."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_app.display import to_display
from unlearn_app.state import forget_spec_for
from unlearn_core.errors import ForgetSpecError
from unlearn_core.figures import embedding_scatter, per_class_heatmap
from unlearn_core.tables import best_cells, metrics_table, over_unlearning_summary, per_class_shift


def fake_run(run_id, method, fa, ta, per_class, seconds=1.0):
    metrics = lambda fa_, ta_, pc: {"FA": fa_, "RA": 99.0, "TA": ta_, "Acc_f": fa_, "Acc_r": 98.0, "MIA_svc": 10.0,
                                    "MIA_entropy": 5.0, "per_class_test": pc}
    return {"id": run_id, "method": method, "status": "done", "report": {
        "original": metrics(99.0, 98.0, [98.0] * 4), "retrained": metrics(0.0, 75.0, [98.0, 98.0, 98.0, 0.0]),
        "unlearned": metrics(fa, ta, per_class), "seconds": seconds, "rte": 10.0 / seconds, "avg_gap": abs(fa) / 4,
        "retrain_seconds": 10.0, "class_names": ["a", "b", "c", "d"], "forgotten_classes": [3]}}


def test_metrics_table_measures_gaps_to_retrain_and_picks_the_best():
    runs = [fake_run(2, "good", 1.0, 74.0, [98, 98, 97, 1], seconds=2.0),
            fake_run(1, "bad", 30.0, 60.0, [98, 60, 98, 30], seconds=0.5)]
    table = metrics_table(runs).set_index("run")
    assert list(table.index) == ["original", "retrain (reference)", "#2 good", "#1 bad"]
    assert table.loc["#2 good", "gap_FA"] == pytest.approx(1.0)
    assert table.loc["#1 bad", "gap_TA"] == pytest.approx(15.0)
    # The reference rows carry their own distance from retraining: what unlearning must close, and zero.
    assert table.loc["original", "avg_gap"] == pytest.approx((23.0 + 0.0 + 99.0 + 0.0) / 4)
    assert table.loc["retrain (reference)", "avg_gap"] == pytest.approx(0.0)
    best = best_cells(table.reset_index())
    assert best["gap_FA"] == {"#2 good"} and best["gap_TA"] == {"#2 good"}
    assert best["rte"] == {"#1 bad"}  # the faster run has the larger speed-up
    assert not any("original" in labels for labels in best.values())


def test_over_unlearning_flags_a_retained_class_that_lost_accuracy():
    runs = [fake_run(2, "good", 1.0, 74.0, [98, 98, 97, 1]), fake_run(1, "bad", 30.0, 60.0, [98, 60, 98, 30])]
    shift, names, forgotten = per_class_shift(runs)
    assert names == ["a", "b", "c", "d"] and forgotten == (3,)
    assert list(shift.index) == ["retrain (reference)", "#2 good", "#1 bad"]
    assert shift.loc["#1 bad", "b"] == pytest.approx(-38.0)
    warnings, _ = over_unlearning_summary(shift, forgotten, [100] * 4)
    assert len(warnings) == 1 and "#1 bad" in warnings[0] and ": b (" in warnings[0]
    figure = per_class_heatmap(shift, forgotten)
    assert list(figure.data[0].x)[3] == "d (forgotten)"


def test_forget_spec_for_each_mode_and_its_errors():
    assert forget_spec_for("class", [1, 3]) == "class:1,3"
    assert forget_spec_for("random", fraction=0.25) == "random:0.25"
    assert forget_spec_for("indices", indices=[9, 2, 2]) == "indices:2,9"
    for kwargs in ({"mode": "class"}, {"mode": "random", "fraction": 1.0}, {"mode": "indices"},
                   {"mode": "subclass"}, {"mode": "nope"}):
        with pytest.raises(ForgetSpecError):
            forget_spec_for(**kwargs)


def test_scatter_carries_dataset_indices_in_every_trace():
    coords = np.arange(20, dtype=float).reshape(10, 2)
    labels = np.array([0, 1] * 5)
    indices = np.arange(100, 110)
    forget = np.zeros(10, bool)
    forget[[1, 4]] = True
    figure = embedding_scatter(coords, labels, indices, forget, ["zero", "one"], selectable=True)
    carried = sorted(int(v) for trace in figure.data for v in trace.customdata)
    assert carried == list(indices)
    forget_trace = next(t for t in figure.data if t.name.startswith("forget set"))
    assert sorted(forget_trace.customdata) == [101, 104]
    assert figure.layout.dragmode == "lasso"
    # WebGL by default (docs/APP.md); SVG on request, with the same points and selection
    assert {trace.type for trace in figure.data} == {"scattergl"}
    svg = embedding_scatter(coords, labels, indices, forget, ["zero", "one"], selectable=True, webgl=False)
    assert {trace.type for trace in svg.data} == {"scatter"}
    assert sorted(int(v) for trace in svg.data for v in trace.customdata) == list(indices)


def test_hover_shows_each_points_predictions_before_and_after():
    from unlearn_core.figures import prediction_hover

    before = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    after = np.array([[0.3, 0.7], [0.1, 0.9], [0.6, 0.4]])
    hover = prediction_hover({"before": before, "after": after}, ["zero", "one"])
    assert list(hover) == ["before: zero (90%) · after: one (70%)", "before: one (80%) · after: one (90%)",
                           "before: zero (70%) · after: zero (60%)"]
    labels, forget = np.array([0, 1, 0]), np.array([False, False, True])
    figure = embedding_scatter(np.zeros((3, 2)), labels, np.array([10, 11, 12]), forget, ["zero", "one"],
                               hover=hover)
    texts = {int(i): t for trace in figure.data for i, t in zip(trace.customdata, trace.text)}
    # each point keeps its own line, forget trace too, after its true class
    assert texts == {10: f"true zero<br>{hover[0]}", 11: f"true one<br>{hover[1]}", 12: f"true zero<br>{hover[2]}"}
    assert all("%{text}" in trace.hovertemplate for trace in figure.data)


def test_panels_share_axes_and_can_be_coloured_by_prediction():
    from unlearn_core.figures import shared_ranges

    a, b = np.array([[0.0, 0.0], [1.0, 2.0]]), np.array([[-3.0, 1.0], [0.5, 5.0]])
    x_range, y_range = shared_ranges(a, b)
    assert x_range[0] < -3.0 and x_range[1] > 1.0 and y_range[0] < 0.0 and y_range[1] > 5.0
    labels, forget = np.array([0, 1]), np.array([False, True])
    predicted = np.array([1, 1])
    figure = embedding_scatter(b, labels, np.array([7, 8]), forget, ["zero", "one"], colour_by=predicted,
                               colour_title="prediction", ranges=(x_range, y_range))
    assert list(figure.layout.xaxis.range) == x_range and list(figure.layout.yaxis.range) == y_range
    names = [t.name for t in figure.data]
    assert names == ["predicted one", "forget set (×)"]  # sample 7 is a true zero coloured as its prediction
    assert figure.data[0].text[0].startswith("true zero")
    forget_marker = figure.data[1].marker
    assert forget_marker.size <= 6 and forget_marker.line.width <= 0.5  # lighter than the points' clusters
    assert figure.layout.legend.orientation == "h"  # below the panel, not beside it


def test_to_display_upscales_grey_and_colour_images():
    grey = np.arange(2 * 1 * 8 * 8, dtype=np.uint8).reshape(2, 1, 8, 8)
    out = to_display(grey, scale=3)
    assert out[0].shape == (24, 24) and out[0][0, 0] == 0 and out[0][3, 3] == grey[0, 0, 1, 1]
    colour = np.zeros((1, 3, 4, 4), np.uint8)
    assert to_display(colour)[0].shape == (4, 4, 3)
