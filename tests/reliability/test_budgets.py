"""A shared server one visitor cannot exhaust: submissions are costed in model trainings, bounded per session and
server-wide (a new session is not a new budget), and refused with one line when the disk is full of pinned files."""

from __future__ import annotations

import threading

import pytest

from unlearn_app.jobs import JobRunner, QueueFull
from unlearn_core.cost import WorkCost, run_cost
from unlearn_core.sweeps import SweepSpec, sweep_cost, validate


def _blocked_runner(**limits):
    """A runner whose worker is held, so every submitted job stays queued for the test."""
    gate = threading.Event()
    runner = JobRunner(**limits)
    runner.submit("gate", lambda progress, cancel: gate.wait(30), meta={"trainings": 0})
    return runner, gate


def _noop(progress, cancel):
    return None


def test_a_new_session_is_not_a_new_budget():
    """One visitor, ten sessions, the largest sweep each: the queue never passes the server-wide limit."""
    runner, gate = _blocked_runner(max_per_owner=8, max_trainings_per_owner=200, max_queued_trainings=400)
    accepted = refused = 0
    for session in range(10):
        try:
            runner.submit("sweep", _noop, kind="sweep", meta={"owner": f"s{session}", "trainings": 198})
            accepted += 1
        except QueueFull as error:
            refused += 1
            assert "UNLEARN_SERVER_MAX_QUEUED_TRAININGS" in str(error) and "\n" not in str(error)
    queued = sum(job.snapshot().meta.get("trainings", 1) for job in runner.active())
    gate.set()
    runner.cancel_all()
    assert (accepted, refused) == (2, 8) and queued == 396


def test_one_session_cannot_queue_past_its_training_budget():
    runner, gate = _blocked_runner(max_per_owner=8, max_trainings_per_owner=200, max_queued_trainings=None)
    runner.submit("sweep", _noop, meta={"owner": "me", "trainings": 150})
    with pytest.raises(QueueFull, match="UNLEARN_MAX_TRAININGS_PER_SESSION"):
        runner.submit("sweep", _noop, meta={"owner": "me", "trainings": 51})
    runner.submit("run", _noop, meta={"owner": "me", "trainings": 50})  # exactly at the limit
    runner.submit("run", _noop, meta={"owner": "someone else", "trainings": 150})
    with pytest.raises(QueueFull):
        runner.check("me", 1)
    gate.set()
    runner.cancel_all()


def test_a_full_disk_refuses_new_work_with_its_reason():
    runner = JobRunner(disk_check=lambda: "the checkpoint cache holds 9 MiB of pinned models")
    with pytest.raises(QueueFull, match="pinned models"):
        runner.submit("run", _noop, meta={"owner": "me", "trainings": 1})


def test_sweep_cost_counts_originals_and_references_not_yet_cached(tmp_path, monkeypatch, digits_class3):
    """New seeds cost their original and retrained models besides the method runs; cached ones cost nothing."""
    spec = validate(SweepSpec(dataset="digits", model="mlp", forgets=["class:3"], methods=["ga"],
                              grid={"ga": {"epochs": [1, 2]}}, seeds=[0, 9001], retrains=2, tag="cost"))
    cost = sweep_cost(spec, store=None, device_kind="cpu")
    # digits_class3 cached seed 0's original and retrained model; seed 9001 is new.
    assert cost == WorkCost(method_runs=4, originals=1, references=1)
    assert cost.trainings == 6 and "= 6 model trainings" in cost.describe()
    assert run_cost("digits", "mlp", "class:3", 0, method_runs=2) == WorkCost(2, 0, 0)
    assert run_cost("digits", "mlp", "class:3", 9002) == WorkCost(1, 1, 1)
