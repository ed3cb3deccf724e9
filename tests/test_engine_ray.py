"""The dashboard's runs on the ray engine against a two-node Ray cluster on loopback, one node killed mid-run
(the app's flow with ``UNLEARN_ENGINE=ray`` is tests/app/test_app_engine.py).

The cluster (``tests/_loopback_cluster.py``) binds every node to 127.0.0.1 with one CPU each, so the job runner
has two run slots and runs spread over both nodes. The test waits until the second node has finished a run and
is executing another, kills that node, and checks that every job still ends done, that each run is recorded
exactly once, and that the runs name the nodes they ran on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from _loopback_cluster import child_env, send, start_cluster, stop_cluster

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]


def _executing_task(pids: list[int]) -> bool:
    """Whether one of ``pids`` is a Ray worker executing a dashboard run (Ray titles it ``ray::run_task``)."""
    for pid in pids:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::run_task"):
            return True
    return False


def _actor_nodes(class_name: str, timeout: float = 60.0) -> list[str]:
    """The nodes of this Ray session's live actors of ``class_name`` (from the GCS's actor table), once none
    of them is still being created."""
    from ray._private import state

    deadline = time.monotonic() + timeout
    while True:
        actors = [actor for actor in state.actors().values() if actor.get("ActorClassName") == class_name]
        if actors and all(actor.get("State") == "ALIVE" for actor in actors) or time.monotonic() > deadline:
            return [actor["Address"]["NodeID"] for actor in actors if actor.get("State") == "ALIVE"]
        time.sleep(0.1)


def _no_provider(progress, cancel):
    raise AssertionError("a ray run must not prepare its setup in the driver")


@pytest.mark.slow
def test_dashboard_runs_on_two_loopback_nodes_lose_nothing_when_a_node_dies(tmp_path):
    from unlearn_app.dispatch import RayEngine
    from unlearn_app.jobs import DONE, JobRunner
    from unlearn_core.store import RunStore
    from unlearn_core.sweeps.single import run_request

    env = child_env(tmp_path)
    env["UNLEARN_DATA_DIR"] = os.environ["UNLEARN_DATA_DIR"]  # the nodes share the tests' checkpoint cache
    cluster, info = start_cluster(tmp_path, nodes=2, cpus=1, env=env)
    store = RunStore(tmp_path / "runs.sqlite")
    runner = None
    try:
        head, second = (node["node_id"] for node in info["nodes"])
        runner = JobRunner(engine=RayEngine(info["address"]), max_running_per_visitor=1)
        assert runner.slots == 2
        assert runner.engine.where() == f"cluster at {info['address']}: 2 nodes, 2 CPUs, 0 GPUs"
        # The progress channel lives on the head, whichever of the two loopback raylets this driver attached to:
        # killing the second node must not take the relayed progress with it.
        assert _actor_nodes("ProgressChannel") == [head]
        forgets = [f"class:{c}" for c in (1, 2, 4, 5, 6, 7)]
        jobs = [runner.submit_run(_no_provider, "finetune", {"epochs": 3}, store=store,
                                  meta={"owner": f"visitor{i}", "forget": forget},
                                  request=run_request("digits", "mlp", forget, 0, "finetune", device="cpu"))
                for i, forget in enumerate(forgets)]
        killed, deadline = False, time.monotonic() + 300
        while not all(job.snapshot().finished for job in jobs) and time.monotonic() < deadline:
            if not killed:
                on_second = [run for run in store.list() if (run.get("config") or {}).get("node_id") == second]
                if on_second and _executing_task(send(cluster, "pids")["nodes"][1]["pids"]):
                    send(cluster, "kill 1")
                    killed = len(store.list())
            time.sleep(0.05)
        snaps = [job.snapshot() for job in jobs]
        assert all(s.finished for s in snaps), [(s.label, s.status) for s in snaps]
        assert killed is not False, "the second node never ran a second run: nothing was killed mid-run"
        assert killed < len(forgets)
        # Every job done (the one on the killed node retried on the head), its progress relayed from the worker
        # through the channel on the head, each task's last events taken before its result came back.
        assert [s.status for s in snaps] == [DONE] * len(forgets), [(s.label, s.status, s.error) for s in snaps]
        assert all({"method", "evaluation"} <= {p.name for p in s.phases} for s in snaps), \
            [[p.name for p in s.phases] for s in snaps]
        runs = store.list()
        # Each run recorded once, by the driver, with the node it finished on.
        assert sorted(run["forget"] for run in runs) == sorted(forgets)
        assert sorted(s.run_id for s in snaps) == sorted(run["id"] for run in runs)
        assert all(run["status"] == "done" for run in runs)
        nodes = {store.get(run["id"])["config"]["node_id"] for run in runs}
        assert second in nodes and nodes <= {head, second}, (nodes, head, second)
        assert {store.get(run["id"])["config"]["engine"] for run in runs} == {"ray"}
    finally:
        if runner is not None:
            runner.shutdown()
        stop_cluster(cluster)


@pytest.mark.slow
def test_a_setup_trains_its_original_as_a_ray_task_and_the_app_process_loads_it(tmp_path, monkeypatch):
    from unlearn_app.dispatch import RayEngine
    from unlearn_app.jobs import DONE, JobRunner
    from unlearn_core.checkpoints import CheckpointCache
    from unlearn_core.data import load_dataset
    from unlearn_core.training import default_recipe, model_cache_key

    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path / "data"))  # an empty cache: the original must be trained
    key = model_cache_key("original", load_dataset("digits"), "mlp", 0, default_recipe("digits"))
    runner = JobRunner(engine=RayEngine(num_cpus=1))
    loaded = []
    try:
        def load(progress, cancel):  # what Setup's job does after the task: read the cached model
            loaded.append(CheckpointCache().path_for(key).exists())
            return "loaded"

        job = runner.submit_setup("train original", load, meta={"owner": "v"},
                                  original={"dataset": "digits", "model": "mlp", "seed": 0, "device": "cpu"})
        snap = runner.wait(job, timeout=300)
        assert snap.status == DONE, snap.error
        assert job.result == "loaded" and loaded == [True]
        # The training's progress came from the worker through the channel.
        assert "original model" in [p.name for p in snap.phases]
        from unlearn_core.models import build_for_dataset

        meta = CheckpointCache().load(key, build_for_dataset("mlp", load_dataset("digits"), seed=0))
        assert meta is not None and meta["test_accuracy"] > 80
    finally:
        runner.shutdown()
