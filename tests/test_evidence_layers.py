"""Hidden or forgotten: linear CKA per layer and relearning from retained data only (``cka``, ``relearn_retain``)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from unlearn_core.errors import UnlearnError
from unlearn_core.evidence import (EvidenceRequest, cka_by_layer, collect_evidence, format_evidence, layer_grams,
                                   linear_cka, relearn_from_retain, retain_relearn_sets)
from unlearn_core.models import build_model


# -- linear CKA ----------------------------------------------------------------------------------------------------

def test_linear_cka_is_invariant_to_rotation_and_scale_and_low_for_unrelated_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12))
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    assert linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, rng.normal(size=(200, 30))) < 0.2
    # the Gram form equals the feature form ||Y^T X||^2 / (||X^T X|| ||Y^T Y||) on centred features
    y = x[:, :5] @ rng.normal(size=(5, 7)) + 0.5 * rng.normal(size=(200, 7))
    xc, yc = x - x.mean(0), y - y.mean(0)
    feature_form = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(feature_form, rel=1e-10)
    assert np.isnan(linear_cka(np.ones((10, 3)), x[:10]))     # constant features have no CKA
    with pytest.raises(UnlearnError, match="one row per sample"):
        linear_cka(x, x[:10])


def test_a_model_that_only_changed_its_head_keeps_cka_one_below_it():
    torch.manual_seed(0)
    original = build_model("small_cnn", 1, (16, 16), 5)
    head_only = copy.deepcopy(original)
    torch.nn.init.normal_(head_only.head.weight, std=1.0)
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8)
    grams = layer_grams(head_only, images, "cpu")
    reference = layer_grams(original, images, "cpu")
    result = cka_by_layer(grams, {"original": reference})
    layers, values = result["layers"], result["original"]
    assert layers[-1] == "head" and len(layers) >= 3
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in values[:-1])
    assert values[-1] < 0.99


# -- relearn from retained data only ---------------------------------------------------------------------------------

def test_relearn_from_retain_reports_what_comes_back(digits_class3):
    setup = digits_class3
    params = {"samples": 256, "steps": 20, "every": 5, "lr": 0.05}
    sets = retain_relearn_sets(setup.bundle, setup.split, {**params, "eval_max": 500}, setup.seed)
    assert sets.eval_source == "test" and not np.isin(sets.slice_idx, setup.split.forget_idx).any()
    retrained = relearn_from_retain(setup.retrained.model, 100.0, setup.bundle, setup.split, setup.device, params,
                                    setup.seed, sets)
    # retained data alone cannot teach the class the retrained model never saw
    assert retrained["start_acc"] == 0.0 and retrained["max_acc"] == 0.0 and retrained["recovered"] == 0.0
    assert [r["step"] for r in retrained["accuracy_by_step"]] == [0, 5, 10, 15, 20]
    assert retrained["recovered_fraction"] == 0.0 and retrained["n_retain"] == 256


def test_cka_and_relearn_retain_in_a_run_report(digits_class3):
    from unlearn_core.pipeline import build_report, run_method

    setup = digits_class3
    request = EvidenceRequest.parse("cka,relearn_retain", {"relearn_retain.steps": "10", "cka.samples": "64"})
    assert request.kinds == ("cka", "relearn_retain")
    assert EvidenceRequest.parse("relearn_retain,probe").kinds == ("probe", "relearn_retain")
    report = build_report(setup, run_method(setup, "finetune", {"epochs": 1}), evidence=request).to_dict()
    evidence = report["evidence"]
    cka = evidence["cka"]
    n_layers = len(cka["layers"])
    for split in ("forget", "retain"):
        assert set(cka[split]) == {"original", "retrained"}
        assert all(len(v) == n_layers for v in cka[split].values())
        assert all(v is None or -1e-9 <= v <= 1 + 1e-9 for v in cka[split]["original"])
    assert cka["n_forget"] == 64 and cka["n_retain"] == 64
    assert set(evidence["relearn_retain"]) == {"original", "unlearned", "retrained"}
    assert evidence["relearn_retain"]["unlearned"]["steps"] == 10
    json.dumps(report, allow_nan=False)
    text = "\n".join(format_evidence(evidence))
    assert "linear CKA per layer" in text and "relearn from retained data only" in text
    # the original's and the retrained model's results are cached on the setup and reused
    cached = [key[1:3] for key in setup._outputs if key[0] == "evidence"]
    assert ("relearn-retain", "retrained") in cached and ("cka-grams", "original") in cached
    again = collect_evidence(setup, run_method(setup, "finetune", {"epochs": 1}), request)
    assert again["relearn_retain"]["retrained"] is setup._outputs[next(
        k for k in setup._outputs if k[:3] == ("evidence", "relearn-retain", "retrained"))]
