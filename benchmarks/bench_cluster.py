"""A sweep on a two-node Ray cluster on loopback, against a local instance of the same size; a node killed mid-run.

    .venv/bin/python benchmarks/bench_cluster.py                     # digits/mlp, ga and rl, seeds 0-3
    .venv/bin/python benchmarks/bench_cluster.py --methods ga --seeds 0,1

Every sweep is ``python -m unlearn_core sweep`` in a child process, run from a folder outside the checkout,
into an empty run store; every original and retrained model is in the checkpoint cache first (a throwaway
local-Ray sweep warms it under Ray's one-thread conditions), so the timings hold the runs, not the training.

1. local: ``--num-cpus N*C`` (a local instance, bound to loopback): wall seconds.
2. cluster: ``tests/_loopback_cluster.py`` with N nodes of C CPUs, every node on 127.0.0.1; ``--address``:
   wall seconds, the cluster's start-up, runs per node (each run's recorded ``node_id``).
3. kill: a new cluster and store; the last node is killed (SIGKILL to its raylet, workers and agents) once it has
   recorded a run and executes another: wall seconds, runs recorded, keys recorded twice, failed runs.

Prints one JSON object with the load average before and after; measure on an idle machine (DEVELOPERS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from _loopback_cluster import send, start_cluster, stop_cluster  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def sweep_command(args, store: Path, tag: str, address: str | None = None, cpus: int | None = None) -> list[str]:
    command = [sys.executable, "-m", "unlearn_core", "sweep", "--dataset", "digits", "--model", "mlp",
               "--forget", "class:1", "--methods", args.methods, "--seeds", args.seeds, "--store", str(store),
               "--tag", tag, "--no-progress", "--quiet"]
    if address:
        command += ["--address", address]
    if cpus:
        command += ["--num-cpus", str(cpus)]
    return command


def recorded(store: Path, tag: str) -> list[tuple]:
    if not store.exists():
        return []
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("SELECT status, config_json FROM runs WHERE tag = ?", (tag,)).fetchall()
    except sqlite3.OperationalError:
        return []
    return [(json.loads(config).get("sweep_key"), status, json.loads(config).get("node_id"))
            for status, config in rows]


def executing_run(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::execute_run"):
                return True
        except OSError:
            continue
    return False


def timed_sweep(command: list[str], env: dict, home: Path, watch=None) -> tuple[float, int]:
    started = time.perf_counter()
    log = home / "sweep.log"
    with open(log, "w") as handle:  # a file, not a pipe: Ray's messages about a dead node fill a pipe
        process = subprocess.Popen(command, cwd=home, env=env, stdout=handle, stderr=subprocess.STDOUT)
    while process.poll() is None:
        if watch is not None:
            watch()
        time.sleep(0.2)
    if process.returncode != 0:
        raise SystemExit(f"sweep failed ({process.returncode}): {log.read_text()[-2000:]}")
    return time.perf_counter() - started, process.returncode


def summary(rows: list[tuple]) -> dict:
    keys = [key for key, _, _ in rows]
    per_node: dict[str, int] = {}
    for _, _, node in rows:
        per_node[node] = per_node.get(node, 0) + 1
    return {"runs": len(rows), "keys_twice": len(keys) - len(set(keys)),
            "failed": sum(1 for _, status, _ in rows if status != "done"), "runs_per_node": per_node}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per node")
    parser.add_argument("--methods", default="ga,rl")
    parser.add_argument("--seeds", default="0,1,2,3")
    args = parser.parse_args()
    out: dict = {"load_before": load(), "nodes": args.nodes, "cpus_per_node": args.cpus, "methods": args.methods,
                 "seeds": args.seeds}
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    home = work / "driver"
    home.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("RAY_ADDRESS", None)
    total = args.nodes * args.cpus

    timed_sweep(sweep_command(args, work / "warm.sqlite", "warm", cpus=total), env, home)

    seconds, _ = timed_sweep(sweep_command(args, work / "local.sqlite", "local", cpus=total), env, home)
    out["local"] = {"seconds": round(seconds, 1), **summary(recorded(work / "local.sqlite", "local"))}
    print(json.dumps(out), file=sys.stderr, flush=True)

    started = time.perf_counter()
    cluster, info = start_cluster(work / "c1", nodes=args.nodes, cpus=args.cpus, env=env)
    out["cluster_start_seconds"] = round(time.perf_counter() - started, 1)
    try:
        seconds, _ = timed_sweep(sweep_command(args, work / "cluster.sqlite", "cluster", address=info["address"]),
                                 env, home)
        out["cluster"] = {"seconds": round(seconds, 1), **summary(recorded(work / "cluster.sqlite", "cluster"))}
        print(json.dumps(out), file=sys.stderr, flush=True)
    finally:
        stop_cluster(cluster)

    cluster, info = start_cluster(work / "c2", nodes=args.nodes, cpus=args.cpus, env=env)
    last = info["nodes"][-1]["node_id"]
    state = {"killed_after": None}

    def watch() -> None:
        if state["killed_after"] is not None:
            return
        rows = recorded(work / "kill.sqlite", "kill")
        pids = send(cluster, "pids")["nodes"][-1]["pids"]
        if any(node == last for _, _, node in rows) and executing_run(pids):
            send(cluster, f"kill {args.nodes - 1}")
            state["killed_after"] = len(rows)

    try:
        seconds, _ = timed_sweep(sweep_command(args, work / "kill.sqlite", "kill", address=info["address"]), env,
                                 home, watch)
        out["kill"] = {"seconds": round(seconds, 1), "killed_after_runs": state["killed_after"],
                       **summary(recorded(work / "kill.sqlite", "kill"))}
    finally:
        stop_cluster(cluster)
    out["load_after"] = load()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
