"""The core pieces behind the Sweeps page: default grids from declared sweep spans, typed grid values, the
categorical-axis decision, readable cell labels, the failure list, run counts and the Pareto axes."""

import math

import pytest

from unlearn_core.errors import ParameterError, UnlearnError
from unlearn_core.figures import label_colours, pareto_note, pareto_range, phase_map
from unlearn_core.figures.sweeps import DARK_TEXT, LIGHT_TEXT, relative_luminance
from unlearn_core.methods import get_method
from unlearn_core.params import Param
from unlearn_core.tables import (categorical_axis, cell_frame, failure_rows, grid_values, parse_grid_text,
                                 phase_matrix, run_counts)

LR = Param("lr", float, 2e-3, "learning rate", low=1e-7, high=0.1, log=True, sweep=(1e-3, 4e-3))
EPOCHS = Param("epochs", int, 5, "passes", low=1, high=100, sweep=(2, 8))


def test_grid_values_cover_the_declared_sweep_span():
    assert grid_values(LR, 3) == [0.001, 0.002, 0.004]
    assert grid_values(EPOCHS, 3) == [2, 5, 8]  # ints without log: evenly spaced
    assert grid_values(EPOCHS, 2) == [2, 8]
    # Without a span: a quarter to four times the default, as before.
    plain = Param("lr", float, 2e-3, "learning rate", low=1e-7, high=0.1, log=True)
    assert grid_values(plain, 3) == [0.0005, 0.002, 0.008]


def test_a_sweep_span_outside_the_declared_range_is_refused():
    with pytest.raises(ValueError, match="sweep span"):
        Param("lr", float, 2e-3, "x", low=1e-7, high=0.1, sweep=(1e-3, 0.5))
    with pytest.raises(ValueError, match="sweep span"):
        Param("lr", float, 2e-3, "x", low=1e-7, high=0.1, sweep=(4e-3, 1e-3))


def test_every_declared_sweep_span_gives_a_valid_default_grid():
    from unlearn_core.methods import load_all, method_names

    load_all()
    for name in method_names():
        for param in get_method(name).params:
            if param.sweep is not None:
                for count in (2, 3, 5):
                    values = grid_values(param, count)
                    assert len(values) >= 2, (name, param.name, count)
                    assert [param.coerce(v) for v in values] == values


def test_typed_grid_values_are_checked_and_ordered():
    assert parse_grid_text(LR, " 4e-3, 0.001,2e-3 ") == [0.001, 0.002, 0.004]
    assert parse_grid_text(EPOCHS, "8,2") == [2, 8]
    with pytest.raises(ParameterError, match=r"must be in \[1e-07, 0.1\]"):
        parse_grid_text(LR, "0.001, 5")
    with pytest.raises(ParameterError, match="whole number"):
        parse_grid_text(EPOCHS, "2, 2.5")
    with pytest.raises(ParameterError, match="ASCII"):
        parse_grid_text(EPOCHS, "٣")  # an Arabic-Indic three
    with pytest.raises(ParameterError, match="repeated"):
        parse_grid_text(EPOCHS, "2, 2")
    with pytest.raises(ParameterError, match="empty value"):
        parse_grid_text(EPOCHS, "2,,3")
    with pytest.raises(ParameterError, match="at least one"):
        parse_grid_text(EPOCHS, " ")
    assert issubclass(ParameterError, UnlearnError)


def test_small_numeric_grids_and_choices_are_categorical_large_numeric_axes_are_not():
    assert categorical_axis([1, 2, 20])
    assert categorical_axis(["sgd", "adam"])
    assert categorical_axis([0.001, 0.002, 0.004, 0.008])
    assert not categorical_axis(list(range(40)))


def test_label_colours_follow_the_background_luminance():
    assert relative_luminance("#ffffff") == pytest.approx(1.0)
    assert relative_luminance("rgb(0, 0, 0)") == pytest.approx(0.0)
    # RdBu: both ends are dark (dark red, dark blue), the middle is near white.
    assert label_colours([-100, 0, 100], "RdBu", -100, 100) == [LIGHT_TEXT, DARK_TEXT, LIGHT_TEXT]
    # Reds from 0 (white) to the limit (dark red).
    assert label_colours([0, 100], "Reds", 0, 100) == [DARK_TEXT, LIGHT_TEXT]


def _result():
    """A sweep result as ``sweep_result`` returns it: a 2x2 GA grid, one cell diverged, one half failed."""
    def cell(cell_id, lr, epochs, runs, gap):
        done = [r for r in runs if r["status"] == "done"]
        summary = {"Acc_f": {"mean": 50.0, "gap": gap}, "Acc_r": {"mean": 90.0, "gap": -1.0},
                   "avg_gap": {"mean": 5.0}, "seconds": {"mean": 1.0}} if done else {}
        return {"id": cell_id, "forget": "class:3", "method": "ga", "title": "GA",
                "params": {"lr": lr, "epochs": epochs, "batch_size": 64}, "runs": runs,
                "failed": len(runs) - len(done), "summary": summary}

    ok = {"status": "done", "error": None}
    nan = {"status": "failed", "error": "gradient ascent: loss became nan (diverged)\nTraceback ..."}
    return {"tag": "t", "forgets": [{"forget": "class:3", "reference": {"run_ids": [1]}}], "cells": [
        cell("a" * 12, 0.001, 1, [{**ok, "run_id": 2, "seed": 0}], 40.0),
        cell("b" * 12, 0.001, 5, [{**ok, "run_id": 3, "seed": 0}], 2.0),
        cell("c" * 12, 0.1, 1, [{**nan, "run_id": 4, "seed": 0}], None),
        cell("d" * 12, 0.1, 5, [{**ok, "run_id": 5, "seed": 0}, {**nan, "run_id": 6, "seed": 1}], -30.0)]}


def test_failure_rows_name_the_cell_and_its_stored_reason():
    frame = cell_frame(_result())
    rows = failure_rows(frame)
    assert [(r["cell"], r["failed"], r["done"], r["run_ids"]) for r in rows] == [
        ("ga epochs=1 lr=0.1", 1, 0, [4]), ("ga epochs=5 lr=0.1", 1, 1, [6])]
    assert rows[0]["reason"] == "gradient ascent: loss became nan (diverged) Traceback ..."
    assert failure_rows(frame[frame["failed"] == 0]) == []


def test_phase_map_hover_gives_the_failure_reason_and_readable_labels():
    frame = cell_frame(_result())
    matrix = phase_matrix(frame, "ga", "epochs", "lr", "forget gap")
    assert matrix["reasons"][1][0].startswith("gradient ascent: loss became nan")
    fig = phase_map(matrix, "ga")
    shown, missing = fig.data
    assert list(missing.customdata) == ["c" * 12]
    assert missing.hovertext[0].startswith("gradient ascent: loss became nan")
    assert "%{hovertext}" in missing.hovertemplate
    # The half-failed cell keeps its value and says that some runs failed.
    notes = dict(zip(shown.customdata, shown.hovertext))
    assert "some runs failed: gradient ascent" in notes["d" * 12] and notes["a" * 12] == ""
    assert len(shown.textfont.color) == len(shown.x)
    assert fig.layout.xaxis.type == "category" and list(fig.layout.xaxis.categoryarray) == ["1", "5"]
    assert fig.layout.legend.y >= 1.0  # above the plot, never over the tick labels


def test_run_counts_count_by_status():
    runs = [{"status": "done"}, {"status": "done"}, {"status": "failed"}, {"status": "running"}]
    assert run_counts(runs) == {"done": 2, "failed": 1, "running": 1, "total": 4}
    assert run_counts([]) == {"done": 0, "failed": 0, "running": 0, "total": 0}


def test_pareto_axes_never_collapse_and_a_lone_point_is_explained():
    low, high = pareto_range([99.0])
    assert low < 0 < 99.0 < high and high == pytest.approx(108.9)
    assert pareto_range([0.2, 0.3]) == [pytest.approx(-0.1), 5.0]
    assert pareto_range([math.nan]) == [pytest.approx(-0.1), 5.0]
    frame = cell_frame(_result())
    assert pareto_note(frame) is None
    lone = frame[frame["cell_id"] == "a" * 12]
    assert "nothing to trade off" in pareto_note(lone)
