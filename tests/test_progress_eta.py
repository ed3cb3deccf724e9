"""Time left from measured per-step cost: the pure estimator, the job line that shows it and the sweep's use of it."""

import threading
import time

import pytest

from unlearn_app.jobs import JobRunner, about_left
from unlearn_core.progress import ProgressEvent, StepClock, format_seconds, seconds_left


def test_seconds_left_is_cost_per_unit_times_units_left():
    assert seconds_left(10.0, 5, 20) == pytest.approx(30.0)
    assert seconds_left(4.0, 4, 4) == 0.0
    assert seconds_left(1.0, 0, 10) is None  # nothing measured yet
    assert seconds_left(1.0, 3, 0) is None  # total unknown
    assert format_seconds(42.4) == "42s" and format_seconds(185) == "3m05s" and format_seconds(None) == "?"


def _event(stage, epoch, epochs, step, steps):
    return ProgressEvent(stage=stage, epoch=epoch, epochs=epochs, step=step, steps=steps)


def test_step_clock_measures_from_the_first_step_and_needs_a_few_steps():
    clock = StepClock(min_steps=3)
    # 2 epochs of 10 steps, 0.5 s a step; the first event arrives at t=100 (after 100 s of loading, not charged).
    assert clock.update(_event("train original", 1, 2, 1, 10), now=100.0) is None
    assert clock.update(_event("train original", 1, 2, 3, 10), now=101.0) is None  # 2 steps measured: too few
    left = clock.update(_event("train original", 1, 2, 4, 10), now=101.5)
    assert left == pytest.approx(16 * 0.5)  # 16 of 20 steps left at 0.5 s each
    left = clock.update(_event("train original", 2, 2, 5, 10), now=107.0)  # step 15 of 20, now 0.5 s/step
    assert left == pytest.approx(5 * 0.5)


def test_step_clock_follows_a_slower_machine():
    clock = StepClock(min_steps=1)
    clock.update(_event("retrain", 1, 1, 1, 100), now=0.0)
    assert clock.update(_event("retrain", 1, 1, 11, 100), now=10.0) == pytest.approx(89.0)
    # the machine gets busy: the next 10 steps take 30 s; the estimate follows the mean cost so far
    assert clock.update(_event("retrain", 1, 1, 21, 100), now=40.0) == pytest.approx(40 / 20 * 79)


def test_step_clock_restarts_on_a_new_stage_a_new_total_or_steps_going_back():
    clock = StepClock(min_steps=1)
    clock.update(_event("train original", 1, 1, 1, 10), now=0.0)
    assert clock.update(_event("train original", 1, 1, 5, 10), now=4.0) == pytest.approx(5.0)
    assert clock.update(_event("retrain", 1, 1, 1, 50), now=100.0) is None  # new stage: nothing measured yet
    assert clock.update(_event("retrain", 1, 1, 2, 50), now=102.0) == pytest.approx(2.0 * 48)
    assert clock.update(_event("retrain", 1, 1, 1, 50), now=200.0) is None  # a second training in the stage
    assert clock.update(ProgressEvent(stage="evaluate", message="metrics"), now=300.0) is None  # no step total


def test_about_left_wording():
    assert about_left(7.2) == "about 7 s left"
    assert about_left(43) == "about 45 s left"
    assert about_left(278) == "about 4 min 40 s left"
    assert about_left(600) == "about 10 min left"


def test_a_running_job_line_shows_its_time_left():
    runner = JobRunner()
    release = threading.Event()
    seen = []

    def work(progress, cancel):
        for step in range(1, 9):
            progress(ProgressEvent(stage="train original", epoch=1, epochs=2, step=step, steps=8))
            time.sleep(0.02)
        seen.append(True)
        release.wait(10)
        return "ok"

    job = runner.submit("original", work, kind="train")
    try:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        snap = job.snapshot()
        assert snap.seconds_left is not None and 0 < snap.seconds_left < 5  # 8 steps left at ~0.02 s each
        assert "s left" in snap.describe() and snap.describe().startswith("original: train original, epoch 1/2")
    finally:
        release.set()
        runner.wait(job, 10)
        runner.shutdown()
    assert "left" not in runner.get(job.job_id).snapshot().describe()  # a finished job says how long it took


def test_a_sweeps_own_estimate_is_taken_as_it_is_and_not_repeated_on_its_line():
    from unlearn_app.jobs import JobSnapshot
    from unlearn_core.sweeps.driver import SweepEvent

    event = SweepEvent(stage="sweep", step=2, steps=8, message="2 done, 1 running, 0 failed, ~30s left",
                       seconds_left=30.0)
    assert StepClock().update(event, now=5.0) == 30.0
    snap = JobSnapshot(1, "sweep", "sweep", status="running", stage="sweep", step=2, steps=8,
                       message=event.message, seconds_left=30.0)
    assert snap.describe().count("left") == 1
