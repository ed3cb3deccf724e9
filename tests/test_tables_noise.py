"""The noise rule of the Results table's highlights, on hand-made numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from unlearn_core.tables import best_cells, best_over_seeds, binomial_margin, sample_sizes, wilson_interval
from unlearn_core.tables.runs import forgot, over_unlearning_summary


def table(fa_values: dict[str, float], retrained_fa: float = 90.0) -> pd.DataFrame:
    rows = [{"run": "retrain (reference)", "method": "retrained", "FA": retrained_fa}]
    rows += [{"run": label, "method": label.split()[-1], "FA": fa} for label, fa in fa_values.items()]
    frame = pd.DataFrame(rows)
    frame["gap_FA"] = (frame["FA"] - retrained_fa).abs()
    frame["in_scope"] = True
    return frame


def test_wilson_interval_matches_the_closed_form():
    # 0 successes of 10: the Wilson interval is [0, z²/(n+z²)] = [0, 27.75 %]; the normal approximation gives 0 width.
    low, high = wilson_interval(0.0, 10)
    assert low == pytest.approx(0.0, abs=1e-9) and high == pytest.approx(100 * 1.96 ** 2 / (10 + 1.96 ** 2), rel=1e-3)
    low, high = wilson_interval(50.0, 100)
    assert (low, high) == pytest.approx((40.38, 59.62), abs=0.01)  # the textbook value for 50 of 100
    assert math.isnan(binomial_margin(50.0, 0))


def test_one_image_on_146_samples_is_not_marked_but_twenty_points_are():
    sizes = {"FA": 146}
    one_image = 100 / 146
    noisy = table({"#1 ga": 90.0 + one_image, "#2 rl": 90.0 + 2 * one_image})
    assert best_cells(noisy)["FA"] == {"#1 ga"}  # without the sample count the shown decimals decide
    assert "FA" not in best_cells(noisy, sizes)
    clear = table({"#1 ga": 90.0, "#2 rl": 70.0})
    assert best_cells(clear, sizes)["FA"] == {"#1 ga"}
    # A run within the noise of the best is best with it; a far one is not.
    three = table({"#1 ga": 90.0, "#2 rl": 90.0 + 2 * one_image, "#3 ft": 60.0})
    assert best_cells(three, sizes)["FA"] == {"#1 ga", "#2 rl"}


def test_the_avg_gap_margin_is_the_mean_of_its_metrics_margins():
    frame = table({"#1 ga": 90.0, "#2 rl": 91.0})
    frame["avg_gap"] = [0.0, 0.5, 1.3]
    assert best_cells(frame)["avg_gap"] == {"#1 ga"}
    # FA's margin at 90 % on 146 samples is about 4.8 points; the other keys' are unknown (0): mean 1.2 > 0.8.
    assert "avg_gap" not in best_cells(frame, {"FA": 146}, avg_gap_keys=("FA", "RA", "TA", "MIA_entropy"))
    assert best_cells(frame, {"FA": 146}, avg_gap_keys=("FA", "RA", "TA", "MIA_entropy", "x", "y", "z", "w")
                      )["avg_gap"] == {"#1 ga"}  # margin 0.6 < the 0.8 difference


def test_forgot_allows_the_noise_of_the_forget_set():
    retrained, original = {"FA": 97.0}, {"FA": 100.0}
    run = {"FA": 99.6}  # 2.6 points from the retrained model: more than the floor and the 75 % share allow
    assert not forgot(run, original, retrained)
    assert forgot(run, original, retrained, {"FA": 146})  # within the Wilson margin (about 3 points at 97 % of 146)


def test_over_unlearning_needs_more_than_the_class_noise():
    shift = pd.DataFrame([[0.0, 0.0], [0.0, -4.0]], index=["retrain (reference)", "#1 ga"], columns=["0", "1"])
    counts = np.array([100, 100])
    assert over_unlearning_summary(shift, (0,), counts)[0]  # 4 points, 4 images: marked on the fixed threshold
    lines, _ = over_unlearning_summary(shift, (0,), counts, reference_accuracy=[0.0, 90.0])
    assert lines == []  # the Wilson margin at 90 % of 100 images is about 5.9 points
    shift.loc["#1 ga", "1"] = -20.0
    assert over_unlearning_summary(shift, (0,), counts, reference_accuracy=[0.0, 90.0])[0]


def test_sample_sizes_name_each_metrics_pool():
    sizes = sample_sizes(146, 1291, [30, 40, 50], forgotten_classes=[1])
    assert sizes["FA"] == sizes["MIA_entropy"] == 146 and sizes["RA"] == 1291
    assert sizes["TA"] == 120 and sizes["Acc_f"] == 40 and sizes["Acc_r"] == sizes["TA_retain"] == 80
    assert "Acc_f" not in sample_sizes(146, 1291, [30, 40, 50])


def test_over_seeds_overlapping_intervals_tie():
    groups = pd.DataFrame({"gap_FA": [1.0, 1.5, 9.0], "gap_FA±": [0.4, 0.3, 1.0]})
    # The best reaches 1.0 + 0.4 = 1.4; the second starts at 1.5 - 0.3 = 1.2 (overlap: tied); the third at 8.
    assert best_over_seeds(groups, ["gap_FA"]) == {"gap_FA": {0, 1}}
    assert best_over_seeds(groups.iloc[:2], ["gap_FA"]) == {}
