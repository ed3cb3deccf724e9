"""Forget quality as the NeurIPS 2023 unlearning competition's released evaluation computes it.

Hand-made confidence arrays pin the released behaviour (identical models score
0, identical distributions 1, a shifted family a known bin), and a brute-force
port of the released ``metric.py`` runs beside ours on random arrays.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearn_core.errors import UnlearnError
from unlearn_core.evidence import competition_score, forget_quality_from_confidences


# -- a port of the released metric ---------------------------------------------------------------------------------
# Ported from google-deepmind/unlearning_evaluation, metric.py (commit ffae0ff, "Open-sourcing A: unlearning
# competition evaluation code"): compute_forget_score_from_confs, _get_epsilons, _get_single_threshold_rates,
# _get_double_threshold_rates. Written threshold by threshold as the release does (every rule materialised and
# compared against every model, rates by torch.mean in float32, epsilons in float32 NumPy), on the CPU instead of
# CUDA. Two readings: the release's `assert thr_eps` on a NumPy array raises for more than one kept threshold, so
# it is read as "at least one threshold kept"; examples that fail it are not generated here.

def _port_single(pos: torch.Tensor, neg: torch.Tensor):
    both = torch.cat([pos, neg])
    count = int(torch.ceil((both.max() - both.min()) * 100))
    thresholds = torch.linspace(both.min(), both.max(), count)           # default dtype: float32
    t = thresholds[None, :].expand(len(pos), -1)
    p = pos[:, None].expand(-1, count)
    n = neg[:, None].expand(-1, count)
    f32 = torch.float32
    return ((p >= t).to(f32).mean(0), (p < t).to(f32).mean(0), (n >= t).to(f32).mean(0), (n < t).to(f32).mean(0))


def _port_double(pos: torch.Tensor, neg: torch.Tensor):
    pos_diff, neg_diff = pos.max() - pos.min(), neg.max() - neg.min()
    width = neg_diff if pos_diff > neg_diff else pos_diff
    if pos_diff >= neg_diff:
        pos, neg = neg, pos
    low = (pos.min() + width - 2.0).numpy()
    high = (pos.max() + 2.0).numpy()
    rights = np.linspace(low, high, num=int(np.ceil((high - low) * 100)))
    width = width.numpy()
    lefts = np.concatenate([np.linspace(r - width - 2.0, r - width + 2.0, num=400) for r in rights])
    rights = np.repeat(rights, 400)
    left = torch.from_numpy(np.tile(lefts[None, :], (len(pos), 1)))
    right = torch.from_numpy(np.tile(rights[None, :], (len(pos), 1)))

    def inside(c):
        return ((left <= c[:, None]) & (c[:, None] <= right)).to(torch.float32)

    pp_pos, pp_neg = inside(pos), inside(neg)
    return pp_pos.mean(0), (1 - pp_pos).mean(0), pp_neg.mean(0), (1 - pp_neg).mean(0)


def _port_epsilons(pos_confs: np.ndarray, neg_confs: np.ndarray, delta: float) -> np.ndarray:
    epsilons = []
    for i in range(pos_confs.shape[1]):
        pos, neg = pos_confs[:, i], neg_confs[:, i]
        pos_diff, neg_diff = np.max(pos) - np.min(pos), np.max(neg) - np.min(neg)
        largest = pos_diff if pos_diff > neg_diff else neg_diff
        smallest = neg_diff if pos_diff > neg_diff else pos_diff
        with np.errstate(divide="ignore", invalid="ignore"):
            if smallest / largest < 0.01:
                epsilons.append(50)
                continue
        rates = [torch.cat(pair) for pair in zip(_port_double(torch.from_numpy(pos), torch.from_numpy(neg)),
                                                  _port_single(torch.from_numpy(pos), torch.from_numpy(neg)))]
        tpr, fnr, fpr, tnr = rates
        eps = torch.zeros(len(tpr))
        eps = torch.where((fpr + fnr == 0) & (tpr + tnr == 2), torch.full_like(eps, math.inf), eps)
        eps = torch.where((eps == 0) & (fpr * fnr == 0), torch.full_like(eps, math.nan), eps)
        with np.errstate(divide="ignore", invalid="ignore"), _quiet():
            fpr_np, fnr_np = fpr.numpy(), fnr.numpy()
            candidate = np.clip(np.nanmax([np.log(1 - delta - fpr_np) - np.log(fnr_np),
                                           np.log(1 - delta - fnr_np) - np.log(fpr_np)], axis=0), 0, None)
        eps = torch.where(eps == 0, torch.from_numpy(candidate), eps).numpy()
        kept = eps[~np.isnan(eps)]
        assert kept.size > 0, "the port's inputs must keep a threshold (the release asserts it)"
        epsilons.append(np.nanmax(kept))
    return np.clip(epsilons, 0, 50)


class _quiet:
    """Silence NumPy's all-NaN-slice warning of nanmax (the release prints it; it changes nothing)."""

    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def released_forget_score(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[float, np.ndarray]:
    n_examples = retrained.shape[1]
    retrain_positive = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
    pos = np.where(retrain_positive, retrained, unlearned)
    neg = np.where(retrain_positive, unlearned, retrained)
    eps = _port_epsilons(pos, neg, delta=1e-5)
    max_epsilon = np.ceil(np.log(unlearned.shape[0] - 1))
    buckets, start, points = {}, 0.0, 1.0
    while start + 0.5 <= max_epsilon:
        buckets[start] = points
        points /= 2
        start += 0.5
    score = 0.0
    for e in eps:
        for begin, value in buckets.items():
            if e < begin + 0.5:
                score += value
                break
    return score / n_examples, eps


# -- hand-made cases -----------------------------------------------------------------------------------------------

def test_k_identical_unlearned_models_score_zero_by_the_narrow_family_rule():
    rng = np.random.default_rng(0)
    retrained = rng.normal(2.0, 1.0, size=(8, 20))
    unlearned = np.tile(rng.normal(2.0, 1.0, size=(1, 20)), (8, 1))  # a deterministic method run 8 times
    result = forget_quality_from_confidences(unlearned, retrained)
    assert result.score == 0.0
    assert result.n_narrow == 20 and np.all(result.epsilons == 50)
    # near-identical (a range under 1 % of the other family's) counts as identical
    jitter = unlearned + rng.uniform(0, 1e-4, size=unlearned.shape)
    assert forget_quality_from_confidences(jitter, retrained).score == 0.0


def test_identical_families_score_one_and_two_models_score_zero():
    rng = np.random.default_rng(1)
    confs = rng.normal(3.0, 1.5, size=(8, 15))
    result = forget_quality_from_confidences(confs, confs.copy())
    assert result.score == 1.0 and np.all(result.epsilons == 0) and result.max_epsilon == 2.0
    # N = 2: ceil(ln 1) = 0 leaves no bin, so even identical families score 0 (as released)
    assert forget_quality_from_confidences(confs[:2], confs[:2].copy()).score == 0.0


def test_a_shifted_family_lands_in_the_bin_its_best_attack_gives():
    retrained = np.array([[0.0], [1.0], [2.0], [3.0]])
    unlearned = retrained + 1.5
    result = forget_quality_from_confidences(unlearned, retrained)
    # best rule: "unlearned iff c >= t" with 2 < t <= 2.5 (or the interval [0, 2] for the retrained family):
    # TPR 3/4, FPR 1/4 -> eps = log((1 - 1e-5 - 1/4) / (1/4)) = 1.0986; N = 4 -> bins up to ceil(ln 3) = 2
    expected = float(np.log(np.float32(1 - 1e-5) - np.float32(0.25)) - np.log(np.float32(0.25)))
    assert result.epsilons[0] == pytest.approx(expected, abs=1e-6)
    assert result.points[0] == 0.25 and result.score == 0.25
    # swapping the families gives the same score: the positive family follows the larger median
    assert forget_quality_from_confidences(retrained, unlearned).score == 0.25
    far = forget_quality_from_confidences(retrained + 10.0, retrained)
    assert far.score == 0.0 and far.n_separated == 1


def test_competition_score_multiplies_the_accuracy_ratios():
    score = competition_score(0.5, [90.0, 92.0], [95.0, 97.0], [80.0], [88.0, 88.0])
    assert score.retain_ratio == pytest.approx(91.0 / 96.0)
    assert score.test_ratio == pytest.approx(80.0 / 88.0)
    assert score.final_score == pytest.approx(0.5 * 91.0 / 96.0 * 80.0 / 88.0)
    assert set(score.to_dict()) == {"forget_quality", "retain_ratio", "test_ratio", "final_score"}


@pytest.mark.parametrize("u, r, message", [
    (np.zeros((3, 4)), np.zeros((4, 4)), "one shape"),
    (np.zeros((1, 4)), np.zeros((1, 4)), "at least 2 models"),
    (np.full((3, 2), np.nan), np.zeros((3, 2)), "finite"),
])
def test_bad_confidences_raise_one_line(u, r, message):
    with pytest.raises(UnlearnError, match=message):
        forget_quality_from_confidences(u, r)


# -- the port beside ours ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_models", [3, 5, 8])
def test_equals_a_port_of_the_released_metric_on_random_arrays(n_models):
    rng = np.random.default_rng(n_models)
    n = 10
    retrained = rng.normal(rng.uniform(-2, 6, size=n), rng.uniform(0.05, 2.0, size=n), size=(n_models, n))
    shift = rng.choice([0.0, 0.3, 1.0, 4.0], size=n)
    scale = rng.choice([0.005, 0.5, 1.0, 2.0], size=n)
    unlearned = (retrained.mean(0) + shift) + scale * rng.standard_normal((n_models, n))
    unlearned[:, 0] = retrained[:, 0]                                   # identical family
    unlearned[:, 1], retrained[:, 1] = 1.25, -0.5                        # two constant, different families
    expected_score, expected_eps = released_forget_score(unlearned, retrained)
    ours = forget_quality_from_confidences(unlearned, retrained)
    assert ours.score == expected_score
    np.testing.assert_allclose(ours.epsilons, expected_eps, rtol=0, atol=1e-6)
    assert ours.n_undetermined == 0
