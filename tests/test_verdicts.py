"""Ensemble verdicts: KLoM and the U-LiRA attack on hand-made margins, and the helper the sweeps call per cell."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unlearn_core.errors import UnlearnError
from unlearn_core.evidence import (RunOutputs, binned_kl, ensemble_verdicts, klom_by_split, klom_per_sample,
                                   roc_curve, roc_summary, run_outputs, ulira_by_split, ulira_scores, verdict_samples)


# -- KLoM ----------------------------------------------------------------------------------------------------------

def test_binned_kl_by_hand():
    # shared range [0, 4] in 20 bins of 0.2; the top value 4.0 falls in no bin (np.digitize, as released)
    p = [0.0, 0.0, 0.1, 4.0]         # binned: three values in bin 1 -> p = [1, 0, ...]
    q = [0.0, 1.0, 2.0, 3.0]         # binned: one value each in bins 1, 6, 11, 16 -> q_1 = 1/4
    assert binned_kl(p, q) == pytest.approx(math.log(1 / 0.25))
    # where p has mass and q none, q is floored at 1e-5 (no renormalisation)
    assert binned_kl([0.0, 0.0, 5.0], [4.0, 4.5, 5.0]) == pytest.approx(math.log(1 / 1e-5))
    # identical samples: 0; everything equal: one bin [v, v + 1], 0
    assert binned_kl([1.0, 2.0, 3.0, 9.0], [1.0, 2.0, 3.0, 9.0]) == 0.0
    assert binned_kl([2.0, 2.0], [2.0, 2.0]) == 0.0
    # values are clipped to [-100, 100] first
    assert binned_kl([-1e6, 0.0], [-100.0, 0.0]) == 0.0


def test_klom_per_sample_is_zero_where_the_families_agree_and_large_where_they_split():
    rng = np.random.default_rng(0)
    retrained = rng.normal(0.0, 1.0, size=(8, 3))
    unlearned = retrained.copy()
    unlearned[:, 2] += 10.0          # sample 2: the unlearned models sit far above the retrained ones
    values = klom_per_sample(unlearned, retrained)
    assert values[0] == 0.0 and values[1] == 0.0
    # no bin shared: KLoM = sum p log(p / 1e-5) = ln(1e5) - H(p), with 7 binned values (the top one is dropped)
    assert math.log(1e5) - math.log(7) <= values[2] <= math.log(1e5)
    result = klom_by_split({"forget": unlearned, "retain": retrained}, {"forget": retrained, "retain": retrained})
    assert result.p95["retain"] == 0.0
    assert result.p95["forget"] == pytest.approx(np.percentile(values, 95))
    assert result.to_dict()["n_samples"] == {"forget": 3, "retain": 3}


# -- U-LiRA --------------------------------------------------------------------------------------------------------

def test_roc_summary_by_hand():
    out = roc_summary([3.0, 2.0, 1.0, 0.5], [0.0, 0.2, 1.0, 0.1])
    # pairs with pos > neg: 4 + 4 + 3 (1.0 vs 0, 0.2, 0.1; tie with 1.0 counts half) + 3 = 14.5 of 16
    assert out["auc"] == pytest.approx(14.5 / 16)
    assert out["tpr_at_1fpr"] == 0.5 and out["tpr_at_5fpr"] == 0.5   # above 1.0 no negative: 2 of 4 positives


def test_ulira_leaves_the_target_out_of_both_fits():
    u = np.array([[1.0], [2.0], [3.0]])
    r = np.array([[-1.0], [0.0], [1.0]])
    pos, neg = ulira_scores(u, r)
    # round 0: fit u on {2, 3} (mean 2.5, std 0.5) and r on {0, 1} (mean 0.5, std 0.5); target u = 1.0
    expected = (-0.5 * ((1.0 - 2.5) / 0.5) ** 2) - (-0.5 * ((1.0 - 0.5) / 0.5) ** 2)
    assert pos[0, 0] == pytest.approx(expected)
    assert neg[0, 0] == pytest.approx((-0.5 * ((-1.0 - 2.5) / 0.5) ** 2) - (-0.5 * ((-1.0 - 0.5) / 0.5) ** 2))


def test_ulira_cannot_tell_one_distribution_apart_and_sees_a_shift():
    rng = np.random.default_rng(3)
    same = ulira_by_split({"forget": rng.normal(0, 1, (8, 400))}, {"forget": rng.normal(0, 1, (8, 400))})
    assert abs(same["forget"]["auc"] - 0.5) < 0.05 and same["forget"]["tpr_at_1fpr"] < 0.05
    shifted = ulira_by_split({"forget": rng.normal(4, 1, (8, 400))}, {"forget": rng.normal(0, 1, (8, 400))})
    assert shifted["forget"]["auc"] > 0.95 and shifted["forget"]["tpr_at_1fpr"] > 0.5
    # identical unlearned models (a deterministic method): every held-out unlearned model is given away
    fixed = np.tile(rng.normal(0, 1, (1, 50)), (8, 1))
    exposed = ulira_by_split({"forget": fixed}, {"forget": rng.normal(0, 1, (8, 50))})
    assert exposed["forget"]["auc"] == 1.0 and exposed["forget"]["tpr_at_1fpr"] == 1.0


def test_ulira_needs_three_models_per_family():
    with pytest.raises(UnlearnError, match="at least 3 models"):
        ulira_scores(np.zeros((2, 5)), np.zeros((2, 5)))


# -- the helper the sweeps call --------------------------------------------------------------------------------------

def _outputs(rng, shift=0.0, n=(40, 30, 20)):
    splits = dict(zip(("forget", "retain", "validation"), n))
    return RunOutputs({s: np.arange(k) for s, k in splits.items()},
                      {"forget": "train", "retain": "train", "validation": "test"},
                      {s: (rng.normal(2.0, 1.0, k) + (shift if s == "forget" else 0.0)).astype(np.float32)
                       for s, k in splits.items()})


def test_ensemble_verdicts_on_synthetic_runs():
    rng = np.random.default_rng(5)
    retrained = [_outputs(rng) for _ in range(8)]
    same = ensemble_verdicts([_outputs(rng) for _ in range(8)], retrained, protocol="competition")
    hiding = ensemble_verdicts([_outputs(rng, shift=6.0) for _ in range(8)], retrained)
    assert same.forget_quality.score > hiding.forget_quality.score == 0.0
    assert hiding.klom.p95["forget"] > same.klom.p95["forget"]
    assert hiding.ulira["forget"]["auc"] > 0.95 > same.ulira["forget"]["auc"]
    out = same.to_dict()
    assert set(out["klom_p95"]) == {"forget", "retain", "validation"}
    assert {"auc", "tpr_at_1fpr", "tpr_at_5fpr", "retain"} <= set(out["ulira"])
    assert out["protocol"] == "competition" and out["k_used"] == 8
    assert out["forget_quality"] == same.forget_quality.score
    json.dumps(out, allow_nan=False)
    # stored form in, same verdicts out
    again = ensemble_verdicts([r.to_dict() for r in [_outputs(np.random.default_rng(9)) for _ in range(3)]],
                              [r.to_dict() for r in retrained[:4]])
    assert again.k_used == 3 and again.k_retrained == 4


def test_ensemble_verdicts_refuse_runs_read_on_different_samples():
    rng = np.random.default_rng(6)
    runs = [_outputs(rng) for _ in range(4)]
    other = _outputs(rng, n=(41, 30, 20))
    with pytest.raises(UnlearnError, match="different forget samples"):
        ensemble_verdicts(runs[:3] + [other], runs)
    with pytest.raises(UnlearnError, match="unknown protocol"):
        ensemble_verdicts(runs, runs, protocol="one")


def test_run_outputs_read_phi_on_fixed_samples(digits_class3):
    setup = digits_class3
    samples = verdict_samples(setup.bundle, setup.split)
    assert np.array_equal(samples["forget"][1], setup.split.forget_idx)
    assert len(samples["retain"][1]) == 500 and len(samples["validation"][1]) == min(500, len(setup.bundle.test_y))
    # the sample sets belong to the forget set: drawn again, they are the same
    again = verdict_samples(setup.bundle, setup.split)
    assert all(np.array_equal(samples[s][1], again[s][1]) for s in samples)
    out = run_outputs(setup.original.model, setup.bundle, setup.split, setup.device, samples)
    assert out.phi["forget"].dtype == np.float32 and len(out.phi["forget"]) == len(setup.split.forget_idx)
    assert np.median(out.phi["forget"]) > 0          # the original still knows its 3s
    retrained = run_outputs(setup.retrained.model, setup.bundle, setup.split, setup.device, samples)
    assert np.median(retrained.phi["forget"]) < 0    # the retrained model never saw one
    assert RunOutputs.from_dict(json.loads(json.dumps(out.to_dict()))).phi["retain"].tolist() == \
        out.phi["retain"].tolist()


def test_a_deterministic_method_under_the_competition_protocol_scores_zero(digits_class3):
    """SSD run 3 times from one original (seeds 0-2) against 3 retrained models: forget quality 0, as released."""
    import dataclasses

    from unlearn_core.pipeline import run_method
    from unlearn_core.training import get_retrained

    setup = digits_class3
    samples = verdict_samples(setup.bundle, setup.split)
    unlearned = []
    for seed in range(3):
        run_setup = dataclasses.replace(setup, seed=seed, _outputs={})   # the same original, another run seed
        model = run_method(run_setup, "ssd").model
        unlearned.append(run_outputs(model, setup.bundle, setup.split, setup.device, samples))
    retrained = [run_outputs(get_retrained(setup.bundle, setup.split, setup.model_name, seed, setup.recipe,
                                           setup.device).model, setup.bundle, setup.split, setup.device, samples)
                 for seed in range(3)]
    spread = np.ptp(np.stack([u.phi["forget"] for u in unlearned]), axis=0)
    assert spread.max() < 1e-3                      # identical up to float noise
    verdicts = ensemble_verdicts(unlearned, retrained, protocol="competition")
    assert verdicts.forget_quality.score == 0.0
    assert verdicts.forget_quality.n_narrow == len(setup.split.forget_idx)
    assert verdicts.to_dict()["protocol"] == "competition"


def test_roc_curve_by_hand():
    # positives 3, 2; negatives 2, 1: thresholds inf, 3, 2, 1 -> (fpr, tpr) (0,0), (0,.5), (.5,1), (1,1)
    curve = roc_curve([3.0, 2.0], [2.0, 1.0])
    assert curve["fpr"] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0] and curve["tpr"] == [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    # its area (trapezoids; the tie at 2 counts one half) is roc_summary's AUC
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(roc_summary([3.0, 2.0], [2.0, 1.0])["auc"])
    with pytest.raises(UnlearnError):
        roc_curve([], [1.0])


def test_ensemble_spec_is_the_competition_protocol_for_one_cell():
    """One run's ensemble: its cell at K seeds from the run's seed, K retrained models, a tag that finds it again
    (and differs per shared-server owner); the reference itself and K < 3 are refused with one line."""
    import pytest

    from unlearn_core.sweeps import SweepError, cells, ensemble_spec

    spec = ensemble_spec("digits", "mlp", "class:3", "ga", {"epochs": 1, "not_a_param": 5}, seed=2, k=4)
    assert spec.protocol == "competition" and spec.seeds == [2, 3, 4, 5] and spec.reference_count() == 4
    (cell,) = cells(spec)
    assert cell.params_dict["epochs"] == 1 and "not_a_param" not in cell.params_dict
    again = ensemble_spec("digits", "mlp", "class:3", "ga", {"epochs": 1}, seed=2, k=4)
    assert again.tag == spec.tag and again.tag.startswith("ensemble-")
    assert ensemble_spec("digits", "mlp", "class:3", "ga", {"epochs": 1}, 2, 4, owner="visitor").tag != spec.tag
    with pytest.raises(SweepError, match="reference itself"):
        ensemble_spec("digits", "mlp", "class:3", "retrain", {}, 0, 4)
    with pytest.raises(SweepError, match="at least 3"):
        ensemble_spec("digits", "mlp", "class:3", "ga", {}, 0, 2)
