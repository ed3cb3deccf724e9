"""``python -m unlearn_core sweep --address`` against a two-node Ray cluster on loopback, one node killed mid-run.

The cluster (``tests/_loopback_cluster.py``) binds every node to 127.0.0.1 and gives each node one CPU, so
runs spread over both. The sweep's driver runs from a folder outside the checkout and the nodes have no path
to it: the package reaches the workers only through the job's runtime_env. The test waits until the second
node has recorded a run and is executing another, kills that node (SIGKILL to its raylet, workers and
agents), and checks that the sweep still finishes with every planned run recorded exactly once, that the runs
name the nodes they ran on, and that running the command again records nothing new.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _loopback_cluster import (child_env, is_loopback_address, listening_addresses, running, send,
                               start_cluster, stop_cluster)

pytest.importorskip("ray")

TAG = "cluster-loopback"


def _sweep_command(address: str, store: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "unlearn_core", "sweep", "--dataset", "digits", "--model", "mlp",
            "--forget", "class:1", "--methods", "ga", "--seeds", "0,1", "--address", address,
            "--store", str(store), "--tag", TAG, "--json", str(out), "--no-progress"]


def _recorded(store: Path) -> list[tuple[str, str, str | None]]:
    """(sweep key, status, node id) of every run of the sweep's tag, one per stored row."""
    if not store.exists():
        return []
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("SELECT status, config_json FROM runs WHERE tag = ?", (TAG,)).fetchall()
    except sqlite3.OperationalError:
        return []  # the driver has not made its tables yet
    out = []
    for status, config in rows:
        config = json.loads(config)
        out.append((config.get("sweep_key"), status, config.get("node_id")))
    return out


def _executing_run(pids: list[int]) -> bool:
    """Whether one of ``pids`` is a Ray worker executing ``execute_run`` (Ray titles it ``ray::execute_run``)."""
    for pid in pids:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::execute_run"):
            return True
    return False


def _node_pids(cluster: subprocess.Popen, index: int) -> list[int]:
    return send(cluster, "pids")["nodes"][index]["pids"]


@pytest.mark.slow
def test_sweep_on_two_loopback_nodes_loses_nothing_when_a_node_dies(tmp_path):
    # The nodes and the driver share the tests' checkpoint cache (digits models train in seconds if absent).
    env = child_env(tmp_path)
    env["UNLEARN_DATA_DIR"] = os.environ["UNLEARN_DATA_DIR"]
    cluster, info = start_cluster(tmp_path, nodes=2, cpus=1, env=env)
    store, out = tmp_path / "runs.sqlite", tmp_path / "sweep.json"
    home = tmp_path / "driver"  # Ray puts the driver's working directory on the workers' sys.path
    home.mkdir()
    try:
        head, second = (node["node_id"] for node in info["nodes"])
        with open(tmp_path / "sweep.log", "w") as log:
            driver = subprocess.Popen(_sweep_command(info["address"], store, out), cwd=home, env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
        killed_at, deadline, driver_listens = None, time.monotonic() + 400, None
        while driver.poll() is None and time.monotonic() < deadline:
            if driver_listens is None and running(driver.pid):
                sockets = listening_addresses([driver.pid])
                if sockets:
                    driver_listens = sockets
            if killed_at is None:
                on_second = [row for row in _recorded(store) if row[2] == second]
                if on_second and _executing_run(_node_pids(cluster, 1)):
                    send(cluster, "kill 1")
                    killed_at = len(_recorded(store))
            time.sleep(0.2)
        log_text = (tmp_path / "sweep.log").read_text()
        assert driver.poll() is not None, "the sweep did not finish in 400 s:\n" + log_text[-3000:]
        assert driver.returncode == 0, log_text[-3000:]
        assert killed_at is not None, ("the second node never ran a second run before the sweep ended: nothing "
                                       "was killed mid-run\n" + log_text[-3000:])
        # The driver joined on loopback, and listened there only.
        assert driver_listens and all(is_loopback_address(address) for _, address, _ in driver_listens), \
            driver_listens
        rows = _recorded(store)
        keys = [key for key, _, _ in rows]
        # Two seeds of ga and the reference ensemble's two retrained models: four runs, each recorded once, done.
        assert len(keys) == 4 and len(set(keys)) == 4, rows
        assert all(status == "done" for _, status, _ in rows), log_text[-3000:]
        assert killed_at < 4  # the kill came before the last run was recorded
        nodes = {node for _, _, node in rows}
        assert second in nodes and nodes <= {head, second}, (nodes, head, second)
        # The sweep's JSON names the node of every run.
        result = json.loads(out.read_text())
        json_nodes = {run["node_id"] for cell in result["cells"] for run in cell["runs"]}
        assert json_nodes <= {head, second} and json_nodes, json_nodes
        # Resume: the same command again (on the head alone) finds every run stored and records nothing.
        again = subprocess.run(_sweep_command(info["address"], store, out), cwd=home, env=env,
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "0 runs now, 4 already stored" in again.stdout + again.stderr, again.stdout + again.stderr[-2000:]
        assert sorted(_recorded(store)) == sorted(rows)
    finally:
        if "driver" in locals() and driver.poll() is None:
            driver.kill()
        stop_cluster(cluster)


def test_sweep_at_an_unreachable_address_exits_2_with_one_line_before_any_work(tmp_path):
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    home = tmp_path / "driver"
    home.mkdir()
    store = tmp_path / "runs.sqlite"
    started = time.monotonic()
    result = subprocess.run(_sweep_command(f"127.0.0.1:{port}", store, tmp_path / "sweep.json"), cwd=home,
                            env=child_env(tmp_path), capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"error: cannot reach the Ray cluster at 127.0.0.1:{port}: Connection refused"]
    # The probe itself is refused at once (test_raycluster times it); this bound covers a loaded machine's
    # start-up of the interpreter and its imports.
    assert seconds < 90, seconds
    assert _recorded(store) == [] and not (tmp_path / "sweep.json").exists()
