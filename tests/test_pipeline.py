"""End to end through the pipeline: retrain and fine-tune on digits."""

from __future__ import annotations

import json
import threading

import pytest

from unlearn_core.errors import Cancelled
from unlearn_core.pipeline import build_report, run_method
from unlearn_core.report import Report


@pytest.fixture(scope="module")
def own_digits_class3(tmp_path_factory):
    """digits / class:3 / mlp in a checkpoint cache of this module's own: the shared one is also written by
    other tests' Ray workers, which retime the same reference at one torch thread and so overwrite its timing."""
    from unlearn_core.pipeline import prepare

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNLEARN_DATA_DIR", str(tmp_path_factory.mktemp("own-cache")))
        yield prepare("digits", "mlp", "class:3", 0, device="cpu")


def test_retrain_method_reproduces_the_reference(own_digits_class3):
    run = run_method(own_digits_class3, "retrain")
    report = build_report(own_digits_class3, run)
    assert report.unlearned.TA == pytest.approx(report.retrained.TA)
    assert report.unlearned.js_test == pytest.approx(0.0, abs=1e-9)
    assert report.avg_gap == pytest.approx(0.0, abs=1e-9)
    assert report.seconds == pytest.approx(report.retrain_seconds)


def test_finetune_keeps_remaining_classes_and_reports_progress(digits_class3):
    events = []
    run = run_method(digits_class3, "finetune", {"epochs": 3}, progress=events.append)
    report = build_report(digits_class3, run)
    assert report.unlearned.Acc_r > 90
    # The typed report is the stored JSON: it survives a strict round trip unchanged.
    assert Report.from_dict(json.loads(json.dumps(report.to_dict(), allow_nan=False))) == report
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


def test_report_records_timing_conditions_and_withholds_an_incomparable_speed_up(digits_class3):
    import dataclasses

    run = run_method(digits_class3, "finetune", {"epochs": 1})
    report = build_report(digits_class3, run)
    timing = report.timing
    assert timing["device"] == "cpu" and timing["threads"] >= 1 and "load_avg_1m" in timing
    assert report.retrain_timing["threads"] >= 1
    # The same conditions: a speed-up is given. Another thread count for the reference: it is withheld.
    same = dataclasses.replace(run, timing={**report.retrain_timing})
    assert build_report(digits_class3, same).rte == pytest.approx(report.retrain_seconds / run.seconds)
    other = dataclasses.replace(run, timing={**report.retrain_timing,
                                             "threads": report.retrain_timing["threads"] + 1})
    withheld = build_report(digits_class3, other)
    assert withheld.rte is None and withheld.rte_comparable is False
    assert "torch threads" in withheld.rte_not_comparable_reason


def test_timing_mismatch_rules():
    from unlearn_core.device import timing_mismatch

    base = {"device": "cpu", "threads": 2, "load_avg_1m": 0.1, "other_load": 0.0, "cpu_count": 2}
    assert timing_mismatch(base, dict(base)) is None
    assert "cuda" in timing_mismatch(base, {**base, "device": "cuda"})
    # Other processes kept 1.2 of 2 cores busy during one of the two timings: not like for like.
    assert "other processes' load" in timing_mismatch(base, {**base, "other_load": 1.2})
    assert timing_mismatch(base, {**base, "other_load": 0.3}) is None
    assert timing_mismatch(None, base) is not None


def test_timed_conditions_count_other_processes_not_ourselves():
    """Over 2 s of wall time the machine was busy 3 CPU-seconds, 1.8 of them ours: others kept 0.6 cores busy."""
    from unlearn_core.device import TimedConditions

    timing = TimedConditions("cpu")
    clocks = {"wall": iter([100.0, 102.0]), "system": iter([50.0, 53.0]), "own": iter([7.0, 8.8])}
    timing.wall_clock = lambda: next(clocks["wall"])
    timing.system_clock = lambda: next(clocks["system"])
    timing.own_clock = lambda: next(clocks["own"])
    with timing:
        pass
    assert timing.conditions["other_load"] == pytest.approx(0.6)


def test_retime_reference_trains_again_when_threads_differ(own_digits_class3):
    import torch

    from unlearn_core.training import get_retrained

    setup = own_digits_class3
    recorded = setup.retrained.meta["timing"]
    same = get_retrained(setup.bundle, setup.split, setup.model_name, setup.seed, setup.recipe, "cpu",
                         retime_for=dict(recorded))
    assert same.from_cache
    other = get_retrained(setup.bundle, setup.split, setup.model_name, setup.seed, setup.recipe, "cpu",
                          retime_for={**recorded, "threads": recorded["threads"] + 1})
    assert not other.from_cache
    # Trained again from the same initial weights with the same seed: the same model.
    for a, b in zip(same.model.state_dict().values(), other.model.state_dict().values()):
        torch.testing.assert_close(a, b)
