"""How much of a difference between two runs one seed can tell apart: binomial intervals of accuracies.

Every headline metric of the Results table is a percentage of ``n`` samples (FA, and both membership attacks, on the
forget samples; RA on the retained training samples; TA, Acc_f and Acc_r on the test images of all, the forgotten
and the remaining classes). With one seed per run, the sampling noise of such a percentage is that of a binomial
proportion: the 95 % **Wilson score interval** (Wilson 1927, "Probable inference, the law of succession, and
statistical inference", JASA 22) of ``p`` on ``n`` samples is

    centre ± half,  centre = (p + z²/2n) / (1 + z²/n),
    half = z / (1 + z²/n) · sqrt(p(1-p)/n + z²/4n²),  z = 1.96,

which, unlike the normal approximation, does not shrink to zero at 0 % or 100 %. :func:`binomial_margin` returns
that ``half`` in percentage points. The Results table marks a difference between runs only where it is larger
than this margin at the best run's value (:func:`unlearn_core.tables.runs.best_cells`); for the Avg. Gap, a mean
of absolute gaps, the margin is the mean of its metrics' margins (each gap moves by at most its metric's margin,
so their mean by at most the mean margin). The membership attacks' percentages are treated as binomial on the
forget samples, an approximation for MIA-SVC, which averages 10 draws of members.

With several seeds the seeds' own 95 % Student-t interval (:func:`unlearn_core.sweeps.summarize`) takes the
binomial interval's place (:func:`separated_best`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

Z95 = 1.959963984540054  # the two-sided 95 % quantile of the standard normal
# Which samples each percentage counts: "forget", "retain" (training samples kept), or test images of "test"
# (all classes), "test_forgotten" and "test_remaining".
SAMPLES = {"FA": "forget", "MIA_svc": "forget", "MIA_entropy": "forget", "RA": "retain", "TA": "test",
           "TA_retain": "test_remaining", "Acc_f": "test_forgotten", "Acc_r": "test_remaining"}
LEGEND = ("with one seed a difference is marked only when it exceeds the half-width of the 95 % Wilson score "
          "interval of an accuracy on that column's number of samples (at the best run's value)")


def wilson_interval(percent: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``percent`` (0-100) observed on ``n`` samples, in percent."""
    if n is None or n <= 0 or percent is None or not math.isfinite(float(percent)):
        return float("nan"), float("nan")
    p = min(max(float(percent) / 100.0, 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100 * (centre - half), 100 * (centre + half)


def binomial_margin(percent: float, n: int, z: float = Z95) -> float:
    """Half the width of :func:`wilson_interval` in percentage points (NaN when ``n`` or ``percent`` is unknown)."""
    low, high = wilson_interval(percent, n, z)
    return (high - low) / 2


def sample_sizes(n_forget: int | None, n_retain: int | None, test_counts=None,
                 forgotten_classes=()) -> dict[str, int]:
    """How many samples each metric's percentage counts (:data:`SAMPLES`); a metric whose count is unknown is
    left out. ``test_counts``: test images per class (``np.bincount`` of the test labels)."""
    pools: dict[str, int] = {}
    if n_forget:
        pools["forget"] = int(n_forget)
    if n_retain:
        pools["retain"] = int(n_retain)
    if test_counts is not None and len(test_counts):
        counts = np.asarray(test_counts, dtype=int)
        gone = [c for c in forgotten_classes or () if 0 <= int(c) < len(counts)]
        pools["test"] = int(counts.sum())
        pools["test_remaining"] = int(counts.sum() - counts[gone].sum()) if gone else int(counts.sum())
        if gone:
            pools["test_forgotten"] = int(counts[gone].sum())
    return {metric: pools[pool] for metric, pool in SAMPLES.items() if pools.get(pool)}


def tied_with_best(gaps: pd.Series, margin: float) -> pd.Series | None:
    """The entries of ``gaps`` (lower is better) within ``margin`` of the smallest, or ``None`` when all are:
    then no difference in the column exceeds the noise and nothing is marked."""
    valid = pd.to_numeric(gaps, errors="coerce").dropna()
    if len(valid) < 2:
        return None
    margin = 0.0 if margin is None or not math.isfinite(margin) else float(margin)
    best = valid.min()
    tied = valid[valid <= best + margin + 1e-9]
    return None if len(tied) == len(valid) else tied


def separated_best(means: pd.Series, halves: pd.Series) -> pd.Series | None:
    """Over seeds: the groups whose mean gap (lower is better) is best or whose 95 % interval overlaps the best
    group's; ``None`` when every group's does (no difference stands out of the seeds' noise)."""
    frame = pd.DataFrame({"mean": pd.to_numeric(means, errors="coerce"),
                          "half": pd.to_numeric(halves, errors="coerce").fillna(0.0)}).dropna(subset=["mean"])
    if len(frame) < 2:
        return None
    best = frame["mean"].idxmin()
    reach = frame.loc[best, "mean"] + frame.loc[best, "half"]
    tied = frame[frame["mean"] - frame["half"] <= reach + 1e-9]
    return None if len(tied) == len(frame) else tied["mean"]
