"""The Unlearn form's field reading and the job runner's refusal of a second identical run."""

from __future__ import annotations

import threading

import pytest

from unlearn_app.forms import field_error, field_text, read_fields
from unlearn_app.jobs import DuplicateRun, JobRunner, run_fingerprint
from unlearn_core.params import Param

LR = Param("lr", float, 1e-3, "step size", low=1e-6, high=1.0, log=True)
EPOCHS = Param("epochs", int, 5, "passes", low=1, high=100)


def test_a_comma_decimal_is_named_not_silently_read():
    assert "written with a dot, e.g. 0.5" in field_error(LR, "0,5")
    assert field_error(LR, "0.5") is None
    assert "from 1e-06 to 1" in field_error(LR, "5") and "out of range" in field_error(LR, "5")
    assert "not a number" in field_error(LR, "abc")
    assert "empty" in field_error(LR, " ")
    assert "whole number" in field_error(EPOCHS, "2.5")
    assert field_error(EPOCHS, "0").startswith("epochs: out of range")
    assert field_text(LR, 1e-5) == "1e-05"


def test_read_fields_returns_values_and_one_line_per_bad_field():
    values, errors = read_fields([LR, EPOCHS], {"lr": "0,5", "epochs": "3"})
    assert values == {"epochs": 3} and list(errors) == ["lr"]


def test_a_second_identical_run_is_refused_while_the_first_waits():
    runner = JobRunner()
    gate = threading.Event()
    fp = run_fingerprint("digits", "mlp", "class:3", 0, "ga", {"lr": 0.01})
    try:
        first = runner.submit("ga", lambda progress, cancel: gate.wait(10), kind="run",
                              meta={"owner": "a", "fingerprint": fp})
        with pytest.raises(DuplicateRun, match=f"already (queued|running) as job #{first.job_id}"):
            runner.submit("ga", lambda progress, cancel: None, kind="run", meta={"owner": "a", "fingerprint": fp})
        with pytest.raises(DuplicateRun):
            runner.check("a", jobs=1, fingerprints=(fp,))
        # Another seed, other parameters or another session's run are other runs.
        runner.check("a", jobs=1, fingerprints=(run_fingerprint("digits", "mlp", "class:3", 1, "ga", {"lr": 0.01}),))
        runner.check("a", jobs=1, fingerprints=(run_fingerprint("digits", "mlp", "class:3", 0, "ga", {"lr": 0.02}),))
        runner.check("b", jobs=1, fingerprints=(fp,))
        gate.set()
        runner.wait(first, timeout=10)
        runner.check("a", jobs=1, fingerprints=(fp,))  # finished: the same run may be asked for again
    finally:
        gate.set()
        runner.shutdown()
