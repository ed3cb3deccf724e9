"""unlearn_core.raycluster: loopback binding, bounded joining, nothing left behind, two nodes, GPU requests.

Every Ray session here runs in a child process (a driver script, or ``tests/_loopback_cluster.py``), so the
loopback setting and Ray's state never leak into the test process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from _loopback_cluster import (REPO, child_env, is_loopback_address, listening_addresses, running, start_cluster,
                               stop_cluster, wait_gone)
from unlearn_core import raycluster
from unlearn_core.raycluster import RayClusterError, ResourceRequest, resource_request


# -- pure functions ------------------------------------------------------------------------------------------------
def test_split_address_and_loopback():
    assert raycluster.split_address("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert raycluster.split_address("ray://head.example:10001") == ("head.example", 10001)
    assert raycluster.split_address("[::1]:6379") == ("::1", 6379)
    assert raycluster.split_address("auto") is None
    for bad in ("nohost", "host:", "host:0", "host:70000", "host:6x", ":6379"):
        with pytest.raises(RayClusterError, match="not HOST:PORT"):
            raycluster.split_address(bad)
    assert raycluster.is_loopback("127.0.0.1") and raycluster.is_loopback("127.1.2.3")
    assert raycluster.is_loopback("localhost") and raycluster.is_loopback("::1")
    assert not raycluster.is_loopback("10.0.0.1") and not raycluster.is_loopback("head.example")


def test_check_address_refuses_a_closed_port_at_once_and_leaves_auto_to_ray():
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RayClusterError, match=f"^cannot reach the Ray cluster at 127.0.0.1:{port}: "):
        raycluster.check_address(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 5
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        raycluster.check_address(f"127.0.0.1:{listener.getsockname()[1]}")  # something answers: no error
    raycluster.check_address("auto")


def test_resource_request_counts_slots_per_node():
    cpu_only = [{"resources": {"CPU": 4.0}}, {"resources": {"CPU": 2.0}}]
    assert resource_request(cpu_only) == ResourceRequest(num_cpus=1.0, num_gpus=0.0, slots=6)
    gpu_nodes = [{"resources": {"CPU": 16.0, "GPU": 1.0}}, {"resources": {"CPU": 8.0, "GPU": 2.0}}]
    # A quarter GPU each: 4 runs on the first node, 8 on the second; GPUs bound the slots, not CPUs.
    assert resource_request(gpu_nodes, 0.25) == ResourceRequest(num_cpus=1.0, num_gpus=0.25, slots=12)
    # 1.0 / 0.1 is 9.999... in floating point: still ten slots on a one-GPU node.
    assert resource_request([{"CPU": 32.0, "GPU": 1.0}], 0.1).slots == 10
    # CPUs bound the slots where they are fewer.
    assert resource_request([{"CPU": 2.0, "GPU": 4.0}], 0.5).slots == 2
    # Two GPUs per run: only the node that has two counts.
    assert resource_request(gpu_nodes, 2).slots == 1
    # CPU-only nodes beside GPU nodes give no GPU slots.
    assert resource_request(cpu_only + gpu_nodes[:1], 1).slots == 1


def test_resource_request_refuses_what_ray_cannot_give():
    with pytest.raises(RayClusterError, match="has none"):
        resource_request([{"CPU": 4.0}], 0.5)
    with pytest.raises(RayClusterError, match="no node"):
        resource_request([{"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}], 2)
    with pytest.raises(RayClusterError, match="whole number"):
        resource_request([{"CPU": 4.0, "GPU": 4.0}], 1.5)
    with pytest.raises(RayClusterError, match="0 or more"):
        resource_request([{"CPU": 4.0}], -1)


def test_where_runs_execute_inline_and_node_id_outside_ray():
    assert raycluster.where_runs_execute("inline") == "this process"
    assert raycluster.node_id() == raycluster.LOCAL_NODE == "local"


def test_private_dir_is_never_inside_the_checkout(tmp_path, monkeypatch):
    # A short data directory inside the checkout (the tests' default lives there too) is refused for Ray's files;
    # a short one outside it is used.
    import shutil

    inside = REPO / ".unlearn_data" / "r"
    if len(str(inside / "ray")) <= raycluster.MAX_PRIVATE_DIR:
        existed = inside.exists()
        monkeypatch.setenv("UNLEARN_DATA_DIR", str(inside))
        try:
            assert REPO not in raycluster.private_dir().resolve().parents
        finally:
            if not existed:
                shutil.rmtree(inside, ignore_errors=True)
    short = Path("/tmp") / f"uld{tmp_path.name[-6:]}"
    short.mkdir(exist_ok=True)
    try:
        monkeypatch.setenv("UNLEARN_DATA_DIR", str(short))
        assert raycluster.private_dir() == (short / "ray").resolve()
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_local_workers_can_import_the_package_from_a_checkout(tmp_path, monkeypatch):
    # A local instance's workers inherit this PYTHONPATH: from any folder, it must lead them to unlearn_core.
    from unlearn_core.raycluster.session import export_package_parent

    monkeypatch.delenv("PYTHONPATH", raising=False)
    parent = export_package_parent()
    assert os.environ["PYTHONPATH"] == parent
    assert export_package_parent() == parent and os.environ["PYTHONPATH"] == parent  # added once
    found = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path[:0] = sys.argv[1].split(':'); "
                            "import unlearn_core.raycluster as r; print(r.__file__)", os.environ["PYTHONPATH"]],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr[-2000:]
    assert Path(found.stdout.strip()).resolve() == Path(raycluster.__file__).resolve()


def test_stop_processes_stops_a_tree_and_spares_a_reused_pid():
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(raycluster.descendants([parent.pid])) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = raycluster.descendants([parent.pid])
        assert len(tree) == 3
        recorded = {pid: raycluster.processes._start_time(pid) for pid in tree}
        # A recorded start time that does not match is another process under a reused pid: left alone.
        assert raycluster.stop_processes({parent.pid: recorded[parent.pid] + 1}) == []
        assert running(parent.pid)
        assert sorted(raycluster.stop_processes(recorded)) == sorted(tree)
        assert wait_gone(sorted(tree), 5.0) == []
    finally:
        parent.kill()
        parent.wait()


# -- a local instance ----------------------------------------------------------------------------------------------
LOCAL_DRIVER = textwrap.dedent("""
    import json, os, sys
    from unlearn_core import raycluster
    session = raycluster.connect(num_cpus=2)
    import ray

    @ray.remote(num_cpus=1)
    def where():
        import time
        time.sleep(0.5)
        return raycluster.node_id()

    nodes = ray.get([where.remote() for _ in range(2)])
    # A second connect() shares the running instance; closing that view stops nothing.
    shared = raycluster.connect(num_cpus=2)
    shared.close()
    nodes += ray.get([where.remote()]) if ray.is_initialized() and not shared.owned else ["shared view closed Ray"]
    print(json.dumps({"pids": session.pids(), "driver": os.getpid(), "session_dir": session.session_dir,
                      "private": str(raycluster.private_dir()), "nodes": nodes,
                      "describe": raycluster.where_runs_execute("ray", session)}), flush=True)
    sys.stdin.readline()
    session.close()
    print(json.dumps({"closed": True, "initialized": ray.is_initialized()}), flush=True)
""")


def test_local_instance_listens_on_loopback_only_is_private_and_leaves_nothing(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", LOCAL_DRIVER], cwd=REPO, env=child_env(tmp_path),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()[-3000:]
        info = json.loads(line)
        pids = info["pids"]
        # The GCS, the raylet, its two workers and its agents at least.
        assert len(pids) >= 5, pids
        listeners = listening_addresses(pids + [info["driver"]])
        owners = {pid for pid, _, _ in listeners}
        assert info["driver"] in owners and len(owners) >= 3, listeners  # driver, GCS, raylet at least
        outside = [entry for entry in listeners if not is_loopback_address(entry[1])]
        assert outside == [], f"Ray listens beyond loopback: {outside}"
        private = Path(info["private"])
        assert private.stat().st_mode & 0o777 == 0o700
        assert Path(info["session_dir"]).resolve().is_relative_to(private.resolve())
        # One Ray node id (not "local"), also after a shared view of the session was closed.
        assert len(info["nodes"]) == 3 and len(set(info["nodes"])) == 1 and info["nodes"][0] != "local", info["nodes"]
        assert info["describe"] == "local Ray with 2 workers"
        process.stdin.write("close\n")
        process.stdin.flush()
        closed = json.loads(process.stdout.readline())
        assert closed == {"closed": True, "initialized": False}
        # close() stops every process of the session before it returns (a second of grace for the reaper).
        left = wait_gone(pids, 2.0)
        assert left == [], f"Ray processes left after close(): {left}"
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()


KILLED_DRIVER = textwrap.dedent("""
    import json, time
    from unlearn_core import raycluster
    session = raycluster.connect(num_cpus=1)
    print(json.dumps({"pids": session.pids(), "temp": raycluster.ray_temp_dir()}), flush=True)
    time.sleep(600)
""")


def test_what_a_killed_driver_left_is_stopped_by_the_next_start(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER], cwd=REPO, env=child_env(tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()[-3000:]
        info = json.loads(line)
    finally:
        process.kill()
        process.wait()
    time.sleep(2.0)
    # Ray 2.60: the raylet's dashboard and runtime-env agents outlive a driver killed with SIGKILL.
    left = [pid for pid in info["pids"] if running(pid)]
    assert left, "nothing outlived the killed driver: this test no longer shows what reap_stale is for"
    # What connect() does before it starts a local instance (without starting one here).
    stopped = raycluster.reap_stale(Path(info["temp"]))
    assert set(left) <= set(stopped)
    assert wait_gone(info["pids"], 2.0) == []
    assert list(Path(info["temp"]).glob(f"session_*/{raycluster.PID_FILE}")) == []


# -- joining -------------------------------------------------------------------------------------------------------
JOIN_DRIVER = textwrap.dedent("""
    import sys, time
    from unlearn_core import raycluster
    started = time.monotonic()
    try:
        raycluster.connect(sys.argv[1], timeout=float(sys.argv[2]))
    except raycluster.RayClusterError as error:
        print(f"{time.monotonic() - started:.1f}")
        print(error)
        sys.exit(2)
    print("joined")
""")


def _join(address: str, timeout: float, tmp_path: Path) -> tuple[int, float, str]:
    result = subprocess.run([sys.executable, "-c", JOIN_DRIVER, address, str(timeout)], cwd=REPO,
                            env=child_env(tmp_path), capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert len(lines) == 2, (result.stdout, result.stderr[-2000:])
    return result.returncode, float(lines[0]), lines[1]


def test_unreachable_address_fails_fast_with_one_line_naming_it(tmp_path):
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    # Nothing listens there any more: the probe is refused at once.
    code, seconds, message = _join(f"127.0.0.1:{port}", raycluster.CONNECT_TIMEOUT_S, tmp_path)
    assert code == 2 and seconds < 30, seconds
    assert f"127.0.0.1:{port}" in message and "cannot reach" in message


def test_a_port_that_is_not_ray_fails_within_the_timeout(tmp_path):
    # Something accepts connections but never answers as a GCS: ray.init alone would retry for minutes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        code, seconds, message = _join(f"127.0.0.1:{port}", 8.0, tmp_path)
    assert code == 2 and 7.5 <= seconds < 15, seconds
    assert message == f"cannot join the Ray cluster at 127.0.0.1:{port}: no Ray answer within 8 s"


# -- two nodes on loopback ---
TWO_NODE_DRIVER = textwrap.dedent("""
    import json, sys
    from unlearn_core import raycluster
    session = raycluster.connect(sys.argv[1])
    import ray

    @ray.remote(num_cpus=1)
    def where(seconds):
        import time
        import unlearn_core
        time.sleep(seconds)
        return raycluster.node_id(), unlearn_core.__file__

    # One task pinned to each node by its own resource, then six free ones that the scheduler spreads.
    pinned = ray.get([where.options(resources={f"node{i}": 0.01}).remote(0) for i in range(2)])
    free = ray.get([where.remote(1.0) for _ in range(6)])
    print(json.dumps({"pinned": [node for node, _ in pinned], "free": [node for node, _ in free],
                      "package": sorted({path for _, path in pinned + free}), "describe": session.describe(),
                      "nodes": sorted(node["node_id"] for node in session.nodes())}), flush=True)
    session.close()
""")


@pytest.mark.slow
def test_two_node_loopback_cluster_runs_tasks_on_both_nodes(tmp_path):
    cluster, info = start_cluster(tmp_path)
    try:
        node_ids = [node["node_id"] for node in info["nodes"]]
        assert info["address"].startswith("127.0.0.1:")
        all_pids = [pid for node in info["nodes"] for pid in node["pids"]]
        outside = [entry for entry in listening_addresses(all_pids) if not is_loopback_address(entry[1])]
        assert outside == [], f"a node listens beyond loopback: {outside}"
        # Ray puts the driver's working directory on the workers' sys.path: run it from elsewhere.
        home = tmp_path / "driver"
        home.mkdir()
        driver = subprocess.run([sys.executable, "-c", TWO_NODE_DRIVER, info["address"]], cwd=home,
                                env=child_env(tmp_path), capture_output=True, text=True, timeout=240)
        assert driver.returncode == 0, driver.stderr[-3000:]
        result = json.loads(driver.stdout.splitlines()[-1])
        assert result["pinned"] == node_ids
        assert set(result["free"]) == set(node_ids)
        assert result["nodes"] == sorted(node_ids)
        assert result["describe"] == f"cluster at {info['address']}: 2 nodes, 2 CPUs, 0 GPUs"
        # The nodes cannot import this checkout: the package reached them through the job's runtime_env.
        assert result["package"] and all(not Path(path).is_relative_to(REPO) for path in result["package"])
    finally:
        stop_cluster(cluster)
