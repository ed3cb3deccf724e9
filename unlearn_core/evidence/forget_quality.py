"""Forget quality as the NeurIPS 2023 unlearning competition's released evaluation computes it.

Source: ``google-deepmind/unlearning_evaluation``, ``metric.py``:
``compute_forget_score_from_confs`` and the functions it calls
(``_get_epsilons``, ``_get_single_threshold_rates``,
``_get_double_threshold_rates``); the final score is the one ``main.py``
logs. Triantafillou et al., "Are we making progress in unlearning? Findings
from the first NeurIPS unlearning competition" (2024), describe it.

Inputs are ``(N models, n examples)`` arrays of logit-scaled confidences
``log(p_y / (1 - p_y))`` (:func:`~unlearn_core.evidence.logit_scaled_confidence`)
of N unlearned and N retrained models on the forget set. Per example:

1. **Direction.** The positive family is the one with the larger median
   (the retrained family when its median is strictly larger, else the
   unlearned one).
2. **Narrow-family rule.** With ``r`` the range (max - min) of each family,
   if ``min(r) / max(r) < 0.01`` the example's epsilon is the cap, 50, and
   it scores 0 (a family that is (almost) a point, e.g. K identical unlearned
   models, is treated as distinguishable). ``0 / 0`` (both families
   constant) is not below 0.01 in floating point, so such an example goes on
   to the attacks.
3. **Attacks.** Two families of decision rules on a grid of thresholds:

   - *one threshold*: "positive iff c >= t" for ``ceil(100 * (max - min))``
     thresholds evenly spaced over the range of both families' values
     (``torch.linspace``, float32);
   - *two thresholds*: "the peakier family iff l <= c <= r", where the
     peakier family is the one with the smaller range (the original
     negative one on a tie) and ``w`` that range: ``ceil(100 * (high - low))``
     right thresholds evenly spaced over
     ``[min_peaky + w - 2, max_peaky + 2]`` and, for each right threshold
     ``r``, 400 left thresholds evenly spaced over ``[r - w - 2, r - w + 2]``.

   Each rule gives rates over the N models of each family (float32):
   TPR/FNR on the rule's positives, FPR/TNR on its negatives.
4. **Per-threshold epsilon.** ``FPR = FNR = 0`` (and ``TPR = TNR = 1``):
   infinite. Exactly one of FPR, FNR zero: discarded (too few models to
   estimate the rate). Otherwise
   ``max(log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR))``
   with ``delta = 1e-5``, the log of a negative argument left out, clipped
   at 0; a threshold whose two terms are both left out is discarded.
5. The example's epsilon is the largest over the kept thresholds, clipped
   to ``[0, 50]``.

**Aggregation.** With ``max_epsilon = ceil(ln(N - 1))``, bins of width 0.5
start at 0 while ``start + 0.5 <= max_epsilon``; an example in the k-th bin
(``k*0.5 <= eps < (k+1)*0.5``) scores ``2^-k``, above the last bin 0. The
forget quality is the mean over examples, in [0, 1]. N = 2 gives no bin
(score 0 whatever the inputs); N = 8 gives four bins (1, 1/2, 1/4, 1/8 for
eps below 0.5, 1, 1.5, 2).

The competition's protocol is N unlearning runs (different seeds) from one
original model against N retrained models; the caller says which protocol
its models followed.

Where the computation differs from a literal run of the released file:

- the rates are counted, not compared threshold by threshold: only the pairs
  of counts (positives inside, negatives inside) a rule achieves matter, so
  the 160 000 two-threshold rules reduce to searchsorted counts; the result
  equals the brute-force computation (``tests/test_forget_quality.py`` runs
  a port of it beside this one);
- the released file's ``assert thr_eps`` tests the truth of a NumPy array,
  which raises for more than one kept threshold; it is read here as its
  intent, "some threshold was kept";
- an example where no threshold is kept (both families constant and equal,
  or ranges too small for the 0.01 grid to split them) stops the released
  code with that assertion; here its epsilon is NaN, it scores 0 points
  (NaN falls in no bin) and ``n_undetermined`` counts it;
- rates are float32 ``count / N`` as ``torch.mean`` gives them on a CPU; on
  CUDA torch multiplies by ``1/N`` instead, which can move a rate by one
  float32 ulp (it changes a score only for an epsilon within about 1e-6 of
  a bin edge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from unlearn_core.evidence.request import EvidenceError

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
INTERVAL_BUFFER = 2.0
BIN_WIDTH = 0.5
NARROW_RATIO = 0.01


@dataclass(frozen=True)
class ForgetQuality:
    """The competition's forget quality of N unlearned against N retrained models, with its per-example parts."""

    score: float                 # mean of the per-example points, in [0, 1]
    epsilons: np.ndarray         # (n,) per-example epsilon in [0, 50]; NaN where no threshold was kept
    points: np.ndarray           # (n,) per-example points: 2^-bin, 0 above the last bin
    n_models: int
    max_epsilon: float           # ceil(ln(N - 1)): the upper edge of the last bin
    n_narrow: int                # examples scored by the narrow-family rule
    n_separated: int             # examples with a perfectly separating threshold (epsilon infinite -> 50)
    n_undetermined: int          # examples with no kept threshold (the released code stops there)

    @property
    def n_examples(self) -> int:
        return int(len(self.points))

    def to_dict(self, per_example: bool = False) -> dict:
        out = {"score": self.score, "n_models": self.n_models, "n_examples": self.n_examples,
               "max_epsilon": self.max_epsilon, "n_narrow": self.n_narrow, "n_separated": self.n_separated,
               "n_undetermined": self.n_undetermined, "delta": DELTA,
               "definition": "NeurIPS 2023 unlearning competition, metric.py compute_forget_score_from_confs"}
        if per_example:
            out["epsilons"] = [None if math.isnan(e) else float(e) for e in self.epsilons]
            out["points"] = [float(p) for p in self.points]
        return out


@lru_cache(maxsize=64)
def _epsilon_table(n_models: int) -> np.ndarray:
    """Per-threshold epsilon for every pair (a, b) = (positives called positive, negatives called positive).

    float32 arithmetic as in the released file: rates are ``count / N``,
    ``inf`` for a perfect split, NaN for a discarded threshold.
    """
    m = np.float32(n_models)
    counts = np.arange(n_models + 1, dtype=np.float32)
    tpr = (counts / m)[:, None] * np.ones((1, n_models + 1), dtype=np.float32)
    fnr = ((m - counts) / m)[:, None] * np.ones((1, n_models + 1), dtype=np.float32)
    fpr = np.ones((n_models + 1, 1), dtype=np.float32) * (counts / m)[None, :]
    tnr = np.ones((n_models + 1, 1), dtype=np.float32) * ((m - counts) / m)[None, :]
    one_minus_delta = np.float32(1 - DELTA)
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.log(one_minus_delta - fpr) - np.log(fnr)
        second = np.log(one_minus_delta - fnr) - np.log(fpr)
        both = np.stack([first, second])
        # nanmax of the two terms; both NaN stays NaN (the threshold is discarded)
        eps = np.where(np.isnan(both[0]), both[1], np.where(np.isnan(both[1]), both[0], np.maximum(both[0],
                                                                                                     both[1])))
        eps = np.clip(eps, 0, None).astype(np.float32)
    perfect = ((fpr + fnr) == 0) & ((tpr + tnr) == 2)
    one_zero = (fpr * fnr) == 0
    eps = np.where(perfect, np.float32(np.inf), np.where(one_zero, np.float32(np.nan), eps))
    return eps


def _single_threshold_pairs(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Codes ``a * (N + 1) + b`` of the (a, b) counts of "positive iff c >= t" over the released threshold grid."""
    both = torch.from_numpy(np.concatenate([pos, neg]))
    low, high = both.min(), both.max()
    count = int(torch.ceil((high - low) * THRESHOLDS_PER_UNIT))
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    thresholds = torch.linspace(low, high, count, dtype=torch.float32).numpy().astype(np.float64)
    a = len(pos) - np.searchsorted(np.sort(pos), thresholds, side="left")
    b = len(neg) - np.searchsorted(np.sort(neg), thresholds, side="left")
    return a * (len(pos) + 1) + b


def _interval_pairs(pos: np.ndarray, neg: np.ndarray, pos_range: float, neg_range: float) -> np.ndarray:
    """Codes ``a * (N + 1) + b`` of the (a, b) counts of "peakier family iff l <= c <= r" over the released grid."""
    width = neg_range if pos_range > neg_range else pos_range
    if pos_range >= neg_range:  # the rule's positives are the peakier family (the original negatives on a tie)
        pos, neg = neg, pos
    low = pos.min() + width - INTERVAL_BUFFER
    high = pos.max() + INTERVAL_BUFFER
    rights = np.linspace(low, high, num=int(np.ceil((high - low) * THRESHOLDS_PER_UNIT)))
    n_left = int(np.ceil(2 * INTERVAL_BUFFER * THRESHOLDS_PER_UNIT))
    lefts = np.linspace(rights - width - INTERVAL_BUFFER, rights - width + INTERVAL_BUFFER, num=n_left, axis=1)

    # One search of every left threshold among both families' sorted values: of the first #(c < l) values,
    # the cumulative counts say how many belong to each family (ties across families need no order: c < l
    # depends on the value alone).
    values = np.concatenate([pos, neg])
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    is_pos = (order < len(pos)).astype(np.int64)
    pos_below = np.concatenate([[0], np.cumsum(is_pos)])
    neg_below = np.arange(len(values) + 1) - pos_below
    below_left = np.searchsorted(ordered, lefts, side="left")                  # #(c < l), both families
    upto_right = np.searchsorted(ordered, rights, side="right")[:, None]       # #(c <= r), both families
    a = np.maximum(pos_below[upto_right] - pos_below[below_left], 0)
    b = np.maximum(neg_below[upto_right] - neg_below[below_left], 0)
    return (a * (len(pos) + 1) + b).ravel()


def _example_epsilon(pos: np.ndarray, neg: np.ndarray, table: np.ndarray) -> tuple[float, str]:
    """One example's epsilon and how it was decided ("narrow", "separated", "undetermined" or "attacks")."""
    pos_range = float(np.max(pos) - np.min(pos))
    neg_range = float(np.max(neg) - np.min(neg))
    largest = pos_range if pos_range > neg_range else neg_range
    smallest = neg_range if pos_range > neg_range else pos_range
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float64(smallest) / np.float64(largest)
    if ratio < NARROW_RATIO:
        return EPSILON_CAP, "narrow"
    size = table.shape[0]
    seen = np.zeros(size * size, dtype=bool)
    seen[_interval_pairs(pos, neg, pos_range, neg_range)] = True
    seen[_single_threshold_pairs(pos, neg)] = True
    seen = seen.reshape(size, size)
    values = table[seen]
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, "undetermined"
    eps = float(values.max())
    if math.isinf(eps):
        return EPSILON_CAP, "separated"
    return min(max(eps, 0.0), EPSILON_CAP), "attacks"


def bin_points(epsilons, n_models: int) -> tuple[np.ndarray, float]:
    """Per-example points of the released aggregation and ``max_epsilon = ceil(ln(N - 1))``."""
    max_epsilon = float(np.ceil(np.log(n_models - 1))) if n_models > 1 else -math.inf
    starts, values = [], []
    start, value = 0.0, 1.0
    while start + BIN_WIDTH <= max_epsilon:
        starts.append(start)
        values.append(value)
        start += BIN_WIDTH
        value /= 2
    points = np.zeros(len(epsilons))
    for i, eps in enumerate(np.asarray(epsilons, dtype=np.float64)):
        for begin, value in zip(starts, values):
            if eps < begin + BIN_WIDTH:
                points[i] = value
                break
    return points, max_epsilon


def forget_quality_from_confidences(unlearned_confs, retrained_confs) -> ForgetQuality:
    """The competition's forget quality of ``(N, n)`` unlearned and retrained confidences (module docstring).

    Row ``i`` of each array is model ``i``; column ``j`` is forget example
    ``j``; the values are logit-scaled confidences. Both arrays have the same
    shape and N >= 2 (N = 2 scores 0 by the released binning).
    """
    u = np.asarray(unlearned_confs, dtype=np.float64)
    r = np.asarray(retrained_confs, dtype=np.float64)
    if u.ndim != 2 or u.shape != r.shape:
        raise EvidenceError(f"forget quality needs two (models, examples) arrays of one shape; got {u.shape} "
                            f"and {r.shape}")
    n_models, n_examples = u.shape
    if n_models < 2 or n_examples == 0:
        raise EvidenceError(f"forget quality needs at least 2 models per family and 1 example; got {n_models} "
                            f"models and {n_examples} examples")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise EvidenceError("confidences must be finite (a model's outputs were NaN or infinite)")
    retrained_positive = np.median(r, axis=0) > np.median(u, axis=0)
    pos = np.where(retrained_positive, r, u)
    neg = np.where(retrained_positive, u, r)
    table = _epsilon_table(n_models)
    epsilons = np.empty(n_examples)
    kinds: dict[str, int] = {"narrow": 0, "separated": 0, "undetermined": 0, "attacks": 0}
    for j in range(n_examples):
        epsilons[j], kind = _example_epsilon(pos[:, j], neg[:, j], table)
        kinds[kind] += 1
    points, max_epsilon = bin_points(epsilons, n_models)
    return ForgetQuality(float(points.sum() / n_examples), epsilons, points, n_models, max_epsilon,
                         kinds["narrow"], kinds["separated"], kinds["undetermined"])


@dataclass(frozen=True)
class CompetitionScore:
    """The competition's final score and its parts: forget quality times the RA and TA ratios to retraining."""

    forget_quality: float
    retain_ratio: float          # mean retain accuracy of the unlearned models / of the retrained models
    test_ratio: float            # mean test accuracy of the unlearned models / of the retrained models
    final_score: float           # forget_quality * retain_ratio * test_ratio

    def to_dict(self) -> dict:
        return {"forget_quality": self.forget_quality, "retain_ratio": self.retain_ratio,
                "test_ratio": self.test_ratio, "final_score": self.final_score}


def competition_score(forget_quality: float, retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned,
                      test_acc_retrained) -> CompetitionScore:
    """``forget_quality * (RA_u / RA_r) * (TA_u / TA_r)`` with each accuracy the mean over its models.

    As ``main.py`` of the released evaluation computes the "final score
    (after utility adjustment)": RA is retain-set accuracy, TA test-set
    accuracy, each averaged over the N unlearned or N retrained models.
    Accuracies may be given as one number or one per model, in any one unit
    (fractions or percent) for all four.
    """
    means = [float(np.mean(np.asarray(v, dtype=np.float64))) for v in
             (retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned, test_acc_retrained)]
    if not all(math.isfinite(m) for m in means) or means[1] <= 0 or means[3] <= 0:
        raise EvidenceError("the competition score needs finite accuracies and positive retrained accuracies")
    retain_ratio, test_ratio = means[0] / means[1], means[2] / means[3]
    return CompetitionScore(float(forget_quality), retain_ratio, test_ratio,
                            float(forget_quality) * retain_ratio * test_ratio)
