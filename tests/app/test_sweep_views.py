"""Builders behind the Sweeps page, the uncertainty on Results and the evidence views (no Streamlit)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from unlearn_core.methods import get_method
from unlearn_core.methods.base import Param
from unlearn_core.tables import (cell_frame, ensemble_band, grid_values, interval_text, pareto_front,
                                 phase_matrix, seed_groups, spec_cells, varied_params)


def test_grid_values_follow_the_declaration():
    lr = Param("lr", float, 2e-3, "learning rate", low=1e-7, high=0.1, log=True)  # no sweep span: around the default
    values = grid_values(lr, 5)
    assert len(values) == 5 and values == sorted(values)
    assert values[0] == pytest.approx(lr.default / 4, rel=0.01) and values[-1] == pytest.approx(lr.default * 4, rel=0.01)
    ratios = np.diff(np.log(values))
    assert np.allclose(ratios, ratios[0], rtol=0.05)  # geometric: the declared scale is multiplicative
    epochs = grid_values(get_method("ga").param("epochs"), 10)
    assert all(isinstance(v, int) for v in epochs) and len(set(epochs)) == len(epochs)
    assert min(epochs) >= 1
    clipped = grid_values(Param("m", float, 0.9, "momentum", low=0.0, high=0.99), 4)
    assert max(clipped) <= 0.99 and min(clipped) >= 0.0
    assert grid_values(Param("b", bool, False, "flag"), 5) == [False, True]
    assert grid_values(Param("o", str, "sgd", "opt", choices=("sgd", "adam")), 5) == ["sgd", "adam"]
    with pytest.raises(ValueError):
        grid_values(Param("t", str, "x", "free text"), 3)


def test_spec_cells_counts_the_grid_without_runs():
    spec = {"methods": ["ga", "rl"], "forgets": ["class:1", "class:2"], "grid": {"ga": {"lr": [1, 2, 3],
                                                                                          "epochs": [1, 2]}}}
    assert spec_cells(spec) == (6 + 1) * 2


def _cell(cell_id, method, params, runs, acc_f=None, fa=None, acc_r=None, ta=None, avg_gap=None, seconds=None):
    def stats(mean, gap=None):
        return {"mean": mean, "gap": gap, "n": 2}

    summary = {"Acc_f": stats(*(acc_f or (None, None))), "FA": stats(*(fa or (None, None))),
               "Acc_r": stats(*(acc_r or (None, None))), "TA": stats(*(ta or (None, None))),
               "avg_gap": stats(avg_gap), "seconds": stats(seconds)}
    return {"id": cell_id, "forget": "class:3", "method": method, "title": method, "params": params,
            "runs": [{"run_id": i, "seed": s, "status": "done"} for i, s in runs], "failed": 0, "summary": summary}


def _result():
    cells = [
        # under-unlearning: forgets little (Acc_f 40 points above the retrained models), keeps the rest
        _cell("a", "ga", {"lr": 0.001, "epochs": 1}, [(1, 0), (2, 1)], acc_f=(40.0, 40.0), acc_r=(98.0, 0.5),
              avg_gap=10.0, seconds=1.0),
        # over-unlearning: forgets, but loses 12 points of retained accuracy
        _cell("b", "ga", {"lr": 0.004, "epochs": 1}, [(3, 0), (4, 1)], acc_f=(0.0, 0.0), acc_r=(85.0, -12.0),
              avg_gap=4.0, seconds=2.0),
        _cell("c", "ga", {"lr": 0.001, "epochs": 3}, [(5, 0), (6, 1)], acc_f=(5.0, 5.0), acc_r=(97.0, -0.5),
              avg_gap=1.5, seconds=3.0),
        _cell("d", "rl", {"lr": 0.01}, [(7, 0)], acc_f=(0.0, 0.0), acc_r=(96.0, -1.5), avg_gap=1.0, seconds=5.0),
    ]
    return {"tag": "t", "forgets": [{"forget": "class:3", "reference": {"run_ids": [8, 9]}}], "cells": cells,
            "dataset": "digits", "model": "mlp"}


def test_cell_frame_signs_and_pareto_axes():
    frame = cell_frame(_result())
    assert frame.attrs["forget_metric"] == "Acc_f" and frame.attrs["retain_metric"] == "Acc_r"
    row = frame.set_index("cell_id")
    assert row.loc["a", "forget_gap"] == 40.0 and row.loc["a", "forget_error"] == 40.0
    assert row.loc["b", "retain_drop"] == 12.0 and row.loc["b", "retain_loss"] == 12.0
    assert row.loc["a", "retain_loss"] == 0.0  # above the retrained models: no loss
    assert row.loc["a", "run_ids"] == [1, 2] and row.loc["d", "n"] == 1
    assert varied_params(frame, "ga") == ["lr", "epochs"] or set(varied_params(frame, "ga")) == {"lr", "epochs"}
    assert varied_params(frame, "rl") == []
    # (error, loss): a (40, 0), b (0, 12), c (5, 0.5), d (0, 1.5). b is beaten by d on loss at equal error;
    # a keeps the only zero loss, so it stays on the front despite its error.
    assert sorted(pareto_front(frame)) == ["a", "c", "d"]


def test_cell_frame_uses_fa_without_forgotten_classes():
    result = _result()
    for cell in result["cells"]:
        cell["summary"]["FA"], cell["summary"]["Acc_f"] = cell["summary"]["Acc_f"], {"mean": None, "gap": None}
    assert cell_frame(result).attrs["forget_metric"] == "FA"


def test_phase_matrix_places_cells_and_counts_collisions():
    frame = cell_frame(_result())
    matrix = phase_matrix(frame, "ga", "lr", "epochs", "forget gap")
    assert matrix["x"] == [0.001, 0.004] and matrix["y"] == [1, 3]
    assert matrix["cell_ids"] == [["a", "b"], ["c", None]]
    assert matrix["z"][0, 0] == 40.0 and math.isnan(matrix["z"][1, 1]) and matrix["signed"]
    one_axis = phase_matrix(frame, "ga", "lr", None, "Avg. Gap")
    assert one_axis["y"] == [None] and one_axis["collisions"] == 1 and not one_axis["signed"]


def test_phase_map_and_pareto_figures_use_fixed_scales_and_method_colours():
    from unlearn_core.figures import method_colour
    from unlearn_core.figures import pareto_scatter, phase_map

    frame = cell_frame(_result())
    fig = phase_map(phase_matrix(frame, "ga", "lr", "epochs", "forget gap"), "ga")
    marker = fig.data[0].marker
    assert marker.cmin == -marker.cmax == -50.0 and marker.cmid == 0  # 40 points -> the fixed 50 step
    assert list(fig.data[0].customdata) == ["a", "b", "c"]
    gap = phase_map(phase_matrix(frame, "ga", "lr", "epochs", "Avg. Gap"), "ga").data[0].marker
    assert gap.cmin == 0 and gap.cmax == 10.0
    scatter = pareto_scatter(frame, pareto_front(frame))
    by_name = {t.name: t for t in scatter.data}
    assert by_name["ga"].marker.color == method_colour("ga") and by_name["rl"].marker.color == method_colour("rl")
    assert list(by_name["ga"].customdata) == ["a", "b", "c"]
    assert "Pareto front" in by_name
    sizes = list(by_name["ga"].marker.size)
    assert sizes[0] < sizes[1] < sizes[2]  # size grows with time


def _run(run_id, method, seed, params=None, acc_f=0.0, avg_gap=1.0, per_class=None):
    return {"id": run_id, "method": method, "seed": seed, "status": "done", "params": params or {},
            "report": {"avg_gap": avg_gap, "seconds": 1.0,
                       "unlearned": {"Acc_f": acc_f, "per_class_test": per_class or [90.0, 90.0]}}}


def test_seed_groups_give_a_t_interval_and_leave_single_runs_alone():
    runs = [_run(1, "ga", 0, {"lr": 1}, acc_f=10.0), _run(2, "ga", 1, {"lr": 1}, acc_f=20.0),
            _run(3, "ga", 0, {"lr": 2}, acc_f=5.0), _run(4, "rl", 0)]
    groups = seed_groups(runs, ["Acc_f", "avg_gap"])
    assert len(groups) == 1 and groups.iloc[0]["n"] == 2 and groups.iloc[0]["run_ids"] == [1, 2]
    assert groups.iloc[0]["Acc_f"] == 15.0
    # n = 2: t(0.975, 1) = 12.706, std = 7.071, half-width = 12.706 * 7.071 / sqrt(2) = 63.53
    assert groups.iloc[0]["Acc_f±"] == pytest.approx(63.53, abs=0.01)
    assert interval_text(15.0, 63.53) == "15.00 ± 63.53"
    assert interval_text(float("nan"), 1.0) == "–" and interval_text(3.0, float("nan")) == "3.00"
    assert seed_groups([_run(1, "ga", 0), _run(2, "ga", 0)], ["Acc_f"]).empty  # same seed twice is not a spread


def test_ensemble_band_needs_two_retrained_models():
    original = [95.0, 95.0]
    one = [_run(1, "retrain", 0, per_class=[0.0, 96.0])]
    assert ensemble_band(one, original) is None
    band = ensemble_band(one + [_run(2, "retrain", 1, per_class=[2.0, 98.0])], original)
    assert band["k"] == 2
    assert np.allclose(band["mean"], [-94.0, 2.0])
    std = np.std([0.0, 2.0], ddof=1)
    assert np.allclose(band["low"], [-94.0 - 2 * std, 2.0 - 2 * std])


def test_per_class_bars_draw_the_band_behind_the_bars():
    from unlearn_core.figures import per_class_bars

    shift = pd.DataFrame([[-95.0, 1.0], [-90.0, -5.0]], index=["retrain (reference)", "#3 ga"], columns=["0", "1"])
    plain = per_class_bars(shift, (0,))
    banded = per_class_bars(shift, (0,), {"k": 3, "low": np.array([-97.0, -1.0]), "high": np.array([-93.0, 2.0])})
    rects = [s for s in banded.layout.shapes if s.type == "rect" and s.layer == "below"]
    assert len(rects) == 2 and rects[1].y0 == -1.0 and rects[1].y1 == 2.0
    assert any("retrained ensemble" in (t.name or "") and "K=3" in t.name for t in banded.data)
    assert not any("retrained ensemble" in (t.name or "") for t in plain.data)


def test_evidence_figures():
    from unlearn_core.figures import probe_bars, relearn_curves, unlearning_curves

    probe = {w: {"probe_forget": v, "knn_forget": v - 1, "probe_retain": 97.0}
             for w, v in (("original", 99.0), ("unlearned", 98.0), ("retrained", 60.0))}
    fig = probe_bars(probe, "unsc")
    assert [t.name for t in fig.data] == ["original", "unlearned (unsc)", "retrained"]
    assert list(fig.data[2].y) == [60.0, 59.0, 97.0]
    relearn = {"original": {"accuracy_by_step": [100.0], "target_acc": 100.0},
               "unlearned": {"accuracy_by_step": [0.0, 60.0], "target_acc": 50.0},
               "retrained": {"accuracy_by_step": [0.0, 10.0, 30.0, 55.0], "target_acc": 50.0}}
    curves = relearn_curves(relearn, "unsc")
    assert [len(t.y) for t in curves.data] == [1, 2, 4]
    assert len(curves.layout.shapes) == 2  # the targets of the unlearned and retrained models
    points = [{"step": 0, "epoch": 0, "stage": "original", "Acc_f": 100.0, "FA": None, "Acc_r": 97.0, "loss": None},
              {"step": 4, "epoch": 1, "stage": "unsc", "Acc_f": 0.0, "FA": None, "Acc_r": 98.0, "loss": 5.7}]
    fig = unlearning_curves({"points": points}, "unsc")
    assert [t.name for t in fig.data] == ["Acc_f", "Acc_r", "loss"]  # FA is never recorded for class forgetting
    assert list(fig.data[0].y) == [100.0, 0.0] and fig.data[2].yaxis == "y2"


def test_cka_and_retain_relearn_figures():
    from unlearn_core.figures import cka_layers, relearn_retain_curves

    cka = {"layers": ["fc1", "fc2", "head"], "forget": {"original": [1.0, 0.99, 0.4], "retrained": [0.7, 0.6, 0.9]},
           "retain": {"original": [1.0, 1.0, 0.95], "retrained": [0.8, 0.8, 0.9]}}
    fig = cka_layers(cka, "unsc")
    # both curves (vs original, vs retrained) on both sample sets, one point per layer
    assert [t.name for t in fig.data] == ["forget: vs original", "forget: vs retrained", "retain: vs original",
                                          "retain: vs retrained"]
    assert list(fig.data[0].x) == ["fc1", "fc2", "head"] and list(fig.data[1].y) == [0.7, 0.6, 0.9]
    assert fig.data[1].line.dash == "dot" and fig.data[0].line.dash == "solid"
    history = [{"step": 0, "acc": 0.0}, {"step": 10, "acc": 40.0}]
    relearn = {"original": {"accuracy_by_step": [{"step": 0, "acc": 99.0}], "original_acc": 99.0},
               "unlearned": {"accuracy_by_step": history, "original_acc": 99.0},
               "retrained": {"accuracy_by_step": [{"step": 0, "acc": 0.0}, {"step": 10, "acc": 2.0}]}}
    fig = relearn_retain_curves(relearn, "unsc")
    assert [t.name for t in fig.data] == ["original", "unlearned (unsc)", "retrained"]
    assert list(fig.data[1].x) == [0, 10] and list(fig.data[1].y) == [0.0, 40.0]
    assert fig.layout.shapes[0].y0 == 99.0    # the original's forget accuracy


def test_klom_histogram_and_ulira_roc():
    from unlearn_core.figures import klom_histogram, ulira_roc

    fig = klom_histogram({"forget": [0.0, 11.5, 3.0], "retain": [0.0, 0.1], "validation": []}, "ga", 4)
    assert [t.name for t in fig.data] == ["forget (3)", "retain (2)"] and "K = 4" in fig.layout.title.text
    fig = ulira_roc({"forget": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 1.0, 1.0], "auc": 0.75}}, "ga")
    assert fig.data[0].name == "forget (AUC 0.75)" and list(fig.data[0].y) == [0.0, 1.0, 1.0]
    assert fig.data[-1].name == "chance" and fig.layout.xaxis.type == "log"


def test_a_cell_without_a_value_is_grey_never_the_neutral_white():
    from unlearn_core.figures import phase_map

    frame = cell_frame(_result())
    frame.loc[frame["cell_id"] == "c", "forget_gap"] = float("nan")  # e.g. every run of the cell failed
    fig = phase_map(phase_matrix(frame, "ga", "lr", "epochs", "forget gap"), "ga")
    assert list(fig.data[0].customdata) == ["a", "b"]
    assert fig.data[1].name == "no value (failed)" and list(fig.data[1].customdata) == ["c"]
    assert fig.data[1].marker.color == "#D9D9D9"


def test_phase_axes_sort_numbers_as_numbers():
    rows = [{"cell_id": str(e), "method": "ga", "p.epochs": np.int64(e), "n": 1, "forget_gap": 0.0}
            for e in (10, 2, 1)]
    matrix = phase_matrix(pd.DataFrame(rows), "ga", "epochs", None, "forget gap")
    assert matrix["x"] == [1, 2, 10]
