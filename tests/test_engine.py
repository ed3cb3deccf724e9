"""The engine settings and the job queue: UNLEARN_ENGINE and the running limits parsed once, the fair queue's
per-visitor limit, the wait estimate on the job line, and the personal default that never imports Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from unlearn_app.dispatch import Dispatcher, InlineEngine, RayEngine, make_engine
from unlearn_app.jobs import DONE, QUEUED, JobRunner
from unlearn_core.settings import SettingsError, _parse

REPO = Path(__file__).resolve().parents[1]


def parse(**env):
    return _parse({k: str(v) for k, v in env.items()}, "/home/x")


def test_engine_settings_defaults_and_values():
    default = parse()
    assert (default.engine, default.ray_address, default.max_running, default.max_running_per_visitor) == \
        ("inline", "", 0, 1)
    chosen = parse(UNLEARN_ENGINE="Ray", UNLEARN_RAY_ADDRESS="127.0.0.1:6379", UNLEARN_MAX_RUNNING="4",
                   UNLEARN_MAX_RUNNING_PER_VISITOR="0")
    assert (chosen.engine, chosen.ray_address, chosen.max_running, chosen.max_running_per_visitor) == \
        ("ray", "127.0.0.1:6379", 4, 0)
    assert parse(UNLEARN_RAY_ADDRESS="ray://head:10001").ray_address == "ray://head:10001"
    assert parse(UNLEARN_RAY_ADDRESS="auto").ray_address == "auto"
    assert isinstance(make_engine(parse()), InlineEngine)
    engine = make_engine(chosen)
    assert isinstance(engine, RayEngine) and engine.address == "127.0.0.1:6379"
    assert make_engine(parse(UNLEARN_ENGINE="ray")).address is None  # a local Ray on loopback


@pytest.mark.parametrize("env, named", [
    ({"UNLEARN_ENGINE": "dask"}, "UNLEARN_ENGINE must be one of inline, ray, got 'dask'"),
    ({"UNLEARN_RAY_ADDRESS": "head"}, "UNLEARN_RAY_ADDRESS must be HOST:PORT"),
    ({"UNLEARN_RAY_ADDRESS": "head:99999"}, "UNLEARN_RAY_ADDRESS must be HOST:PORT"),
    ({"UNLEARN_RAY_ADDRESS": "head:6379 x"}, "UNLEARN_RAY_ADDRESS must be HOST:PORT"),
    ({"UNLEARN_MAX_RUNNING": "-1"}, "UNLEARN_MAX_RUNNING must be a whole number"),
    ({"UNLEARN_MAX_RUNNING_PER_VISITOR": "1.5"}, "UNLEARN_MAX_RUNNING_PER_VISITOR must be a whole number"),
])
def test_bad_engine_settings_are_one_line_errors(env, named):
    with pytest.raises(SettingsError) as raised:
        parse(**env)
    assert str(raised.value).startswith(named) and "\n" not in str(raised.value)


def test_dispatcher_runs_one_job_per_visitor_at_a_time_and_lets_others_pass():
    queue = Dispatcher(slots=2, per_owner=1)
    started, gates = [], {name: threading.Event() for name in ("a1", "a2", "b1")}

    def call(name):
        def run():
            started.append(name)
            gates[name].wait(10)
        return run

    try:
        futures = {name: queue.submit(name[0], call(name)) for name in ("a1", "a2", "b1")}
        deadline = time.monotonic() + 5
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        # Two slots: visitor a's second job waits for its first, visitor b's (submitted later) goes first.
        assert started == ["a1", "b1"] and queue.running() == 2
        gates["a1"].set()
        futures["a1"].result(5)
        deadline = time.monotonic() + 5
        while len(started) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started == ["a1", "b1", "a2"]
        gates["a2"].set(), gates["b1"].set()
        for future in futures.values():
            future.result(5)
    finally:
        for gate in gates.values():
            gate.set()
        queue.shutdown()


def test_a_queued_job_can_be_cancelled_before_it_runs():
    queue = Dispatcher(slots=1)
    gate, ran = threading.Event(), []
    try:
        first = queue.submit("a", lambda: gate.wait(10))
        second = queue.submit("b", lambda: ran.append("b"))
        assert second.cancel()
        gate.set()
        first.result(5)
        time.sleep(0.1)
        assert ran == [] and second.cancelled()
    finally:
        gate.set()
        queue.shutdown()


def test_job_runner_limits_running_jobs_per_visitor_and_in_all():
    runner = JobRunner(max_running=2, max_running_per_visitor=1)
    gate = threading.Event()
    try:
        jobs = [runner.submit(f"{owner}{i}", lambda p, c: gate.wait(10), meta={"owner": owner})
                for owner, i in (("a", 1), ("a", 2), ("b", 1), ("c", 1))]
        deadline = time.monotonic() + 5
        while sum(j.snapshot().status == "running" for j in jobs) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert [j.snapshot().status for j in jobs] == ["running", QUEUED, "running", QUEUED]
        gate.set()
        assert all(runner.wait(j, timeout=10).status == DONE for j in jobs)
    finally:
        gate.set()
        runner.shutdown()


def test_a_queued_job_says_when_it_should_be_done():
    runner = JobRunner()
    gate = threading.Event()
    try:
        first = runner.submit("first", lambda p, c: time.sleep(0.3))
        runner.wait(first, timeout=10)
        blocker = runner.submit("blocker", lambda p, c: gate.wait(10))
        waiting = runner.submit("waiting", lambda p, c: None)
        ahead, eta = runner.wait_estimate(waiting)
        took = first.snapshot().finished_at - first.snapshot().started_at
        # One slot, one job ahead: its turn after one mean run, then its own.
        assert ahead == 1 and eta == pytest.approx(2 * took, rel=0.2)
        line = waiting.snapshot().describe(ahead, eta)
        assert line.startswith("waiting: waiting for the worker (1 job(s) ahead, done in about ") and \
            line.endswith(" s)")
        assert runner.wait_estimate(first) == (0, None)  # finished: nothing to wait for
        gate.set()
        runner.wait(blocker, timeout=10)
    finally:
        gate.set()
        runner.shutdown()


def test_the_personal_default_runs_a_job_and_never_imports_ray(tmp_path):
    code = ("import sys\n"
            "from unlearn_app.dispatch import make_engine\n"
            "from unlearn_app.jobs import JobRunner\n"
            "runner = JobRunner(engine=make_engine())\n"
            "job = runner.submit('x', lambda p, c: 41 + 1)\n"
            "assert runner.wait(job, timeout=30).status == 'done' and job.result == 42\n"
            "print(runner.engine.where())\n"
            "runner.shutdown()\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARN_ENGINE")}
    env.update(UNLEARN_DATA_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "this process"
