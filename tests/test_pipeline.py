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
