"""The background worker: one job at a time, progress snapshots, cancel, failures kept off the worker."""

from __future__ import annotations

import threading
import time

import pytest

from unlearn_core.errors import DivergenceError
from unlearn_app.jobs import CANCELLED, DONE, FAILED, JobRunner
from unlearn_core.progress import Reporter


@pytest.fixture()
def runner():
    jobs = JobRunner()
    yield jobs
    jobs.shutdown()


def test_jobs_run_one_at_a_time_in_submission_order(runner):
    log, active, overlap = [], [0], []

    def job(name):
        def work(progress, cancel):
            active[0] += 1
            overlap.append(active[0])
            time.sleep(0.05)
            log.append(name)
            active[0] -= 1
            return name
        return work

    jobs = [runner.submit(f"job{i}", job(i)) for i in range(4)]
    for j in jobs:
        assert runner.wait(j, timeout=10).status == DONE
    assert log == [0, 1, 2, 3]
    assert max(overlap) == 1
    assert [j.result for j in jobs] == [0, 1, 2, 3]


def test_queued_jobs_say_how_many_jobs_are_ahead_of_them(runner):
    release = threading.Event()
    blocker = runner.submit("blocker", lambda progress, cancel: release.wait(10), meta={"owner": "a"})
    second = runner.submit("second", lambda progress, cancel: None, meta={"owner": "b"})
    third = runner.submit("third", lambda progress, cancel: None, meta={"owner": "a"})
    try:
        assert runner.ahead_of(blocker) == 0
        assert runner.ahead_of(third) == 2  # other sessions' jobs count: they hold the one worker too
        assert third.snapshot().describe(runner.ahead_of(third)) == "third: waiting for the worker (2 job(s) ahead)"
    finally:
        release.set()
    runner.wait(third, timeout=10)
    assert runner.ahead_of(second) == 0


def test_progress_events_land_in_the_snapshot(runner):
    release = threading.Event()
    seen = threading.Event()

    def work(progress, cancel):
        reporter = Reporter(progress, cancel, "fine-tune")
        reporter(epoch=2, epochs=4, step=5, steps=10, loss=0.25)
        seen.set()
        release.wait(5)

    job = runner.submit("ft", work)
    assert seen.wait(5)
    snap = job.snapshot()
    assert snap.status == "running" and snap.stage == "fine-tune"
    assert (snap.epoch, snap.epochs, snap.loss) == (2, 4, 0.25)
    assert snap.fraction == pytest.approx((1 * 10 + 5) / 40)
    assert "epoch 2/4" in snap.describe() and "loss 0.2500" in snap.describe()
    release.set()
    assert runner.wait(job, 5).status == DONE


def test_cancel_stops_a_running_job_and_a_queued_one_never_starts(runner):
    started = threading.Event()
    ran_second = []

    def long(progress, cancel):
        reporter = Reporter(progress, cancel, "loop")
        started.set()
        for step in range(10_000):
            reporter(step=step, steps=10_000)
            time.sleep(0.01)

    first = runner.submit("long", long)
    second = runner.submit("second", lambda p, c: ran_second.append(1))
    assert started.wait(5)
    second.cancel()
    first.cancel()
    assert runner.wait(first, 5).status == CANCELLED
    assert runner.wait(second, 5).status == CANCELLED
    assert ran_second == []


def test_failures_are_recorded_and_the_worker_survives(runner):
    def diverge(progress, cancel):
        raise DivergenceError("loss became nan (diverged); lower the learning rate")

    def bug(progress, cancel):
        raise KeyError("oops")

    a = runner.submit("a", diverge)
    b = runner.submit("b", bug)
    c = runner.submit("c", lambda p, q: 42)
    assert runner.wait(a, 5).status == FAILED
    assert "lower the learning rate" in a.snapshot().error
    assert runner.wait(b, 5).status == FAILED and b.snapshot().error.startswith("KeyError")
    assert runner.wait(c, 5).status == DONE and c.result == 42


def test_submit_run_records_the_run_in_the_store(runner, tmp_path, digits_class3):
    from unlearn_core.store import RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    job = runner.submit_run(lambda p, c: digits_class3, "finetune", {"epochs": 1}, store=store)
    snap = runner.wait(job, 120)
    assert snap.status == DONE, snap.error
    assert snap.run_id is not None
    stored = store.get(snap.run_id)
    assert stored["status"] == "done" and stored["method"] == "finetune"
    assert stored["report"]["unlearned"]["TA"] == pytest.approx(job.result[1]["unlearned"]["TA"])


def test_phases_have_their_own_progress_and_times():
    """The first run trains the reference, then runs the method, then evaluates: three phases, three times."""
    from unlearn_app.jobs import JobRunner
    from unlearn_core.progress import ProgressEvent

    runner = JobRunner()

    def work(progress, cancel):
        time.sleep(0.06)  # loading data and models before the first report
        for step in range(1, 3):
            progress(ProgressEvent(stage="retrain", epoch=1, epochs=1, step=step, steps=2))
        time.sleep(0.05)
        progress(ProgressEvent(stage="unsc subspace", step=1, steps=4))
        snap = job.snapshot()
        # the reference's phase is closed at 100 % when the method starts; the method's bar starts at its own 25 %
        assert [p.name for p in snap.phases] == ["preparing", "retrain reference", "method"]
        assert snap.phases[1].finished_at is not None and snap.phases[1].fraction == 1.0
        assert snap.phases[2].fraction == pytest.approx(0.25)
        progress(ProgressEvent(stage="fine-tune", epoch=1, epochs=2, step=1, steps=1))
        progress(ProgressEvent(stage="evaluate", message="metrics"))
        return None

    job = runner.submit("unsc on digits/class:3", work, kind="run", meta={"method": "unsc"})
    snap = runner.wait(job, timeout=10)
    runner.shutdown()
    assert [p.name for p in snap.phases] == ["preparing", "retrain reference", "method", "evaluation"]
    assert all(p.finished_at is not None and p.fraction == 1.0 for p in snap.phases)
    assert snap.phases[0].seconds() >= 0.05 and snap.phases[1].seconds() >= 0.05
    # The phases cover the whole job: their times add up to the total.
    assert sum(p.seconds() for p in snap.phases) == pytest.approx(snap.finished_at - snap.started_at, abs=0.01)
    text = snap.describe()
    assert "preparing" in text and "retrain reference" in text and "unsc" in text
