"""End to end through the pipeline: retrain and fine-tune on digits."""

from __future__ import annotations

import threading

import pytest

from unlearn_core.errors import Cancelled
from unlearn_core.pipeline import build_report, run_method


def test_retrain_method_reproduces_the_reference(digits_class3):
    run = run_method(digits_class3, "retrain")
    report = build_report(digits_class3, run)
    assert report["unlearned"]["TA"] == pytest.approx(report["retrained"]["TA"])
    assert report["unlearned"]["js_test"] == pytest.approx(0.0, abs=1e-9)
    assert report["avg_gap"] == pytest.approx(0.0, abs=1e-9)
    assert report["seconds"] == pytest.approx(report["retrain_seconds"])


def test_finetune_keeps_remaining_classes_and_reports_progress(digits_class3):
    events = []
    run = run_method(digits_class3, "finetune", {"epochs": 3}, progress=events.append)
    report = build_report(digits_class3, run)
    assert report["unlearned"]["Acc_r"] > 90
    assert [e.epoch for e in events][-1] == 3 and all(e.loss is not None for e in events)
    # The original model is untouched: methods work on a copy.
    assert digits_class3.metrics("original")["FA"] == 100.0


def test_cancel_stops_a_method(digits_class3):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        run_method(digits_class3, "finetune", cancel=cancel)


def test_a_diverged_model_is_reported_not_scored(digits_class3):
    import torch

    from unlearn_core.errors import DivergenceError
    from unlearn_core.pipeline import MethodRun

    broken = digits_class3.task().copy_original()
    with torch.no_grad():
        broken.head.weight.fill_(float("nan"))
    with pytest.raises(DivergenceError, match="NaN or infinite"):
        build_report(digits_class3, MethodRun("finetune", {}, broken, 1.0, {}))


@pytest.mark.parametrize("method, params", [("natmu", {"epochs": 1}), ("neggrad_plus", {}), ("unsc", {"epochs": 2}),
                                            ("rl", {"epochs": 1})])
def test_same_seed_gives_the_same_model_whatever_the_global_random_state(digits_class3, method, params):
    import dataclasses

    import torch

    from unlearn_core.models import build_for_dataset
    from unlearn_core.training import TrainedModel

    # small_cnn has dropout, which draws from torch's global generator; a seed must still give one model.
    original = build_for_dataset("small_cnn", digits_class3.bundle, seed=0)
    setup = dataclasses.replace(digits_class3, model_name="small_cnn", _outputs={},
                                original=TrainedModel(original, "untrained-small-cnn", {}, False, 0.0))
    torch.manual_seed(123)
    first = run_method(setup, method, params).model.state_dict()
    torch.manual_seed(456)
    state_before = torch.random.get_rng_state()
    second = run_method(setup, method, params).model.state_dict()
    assert torch.equal(torch.random.get_rng_state(), state_before), "the run changed the caller's random state"
    changed = False
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)
        changed |= not torch.equal(first[key], original.state_dict()[key])
    assert changed, f"{method} did not change the model, so the test proves nothing"
