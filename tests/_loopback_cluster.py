"""A Ray cluster of several nodes on this machine, every node bound to 127.0.0.1 (for tests and benchmarks).

Run as a script: ``python tests/_loopback_cluster.py --nodes 2 --cpus 1``. It starts a head and
``nodes - 1`` more nodes with ``ray.cluster_utils.Cluster`` (``ray start --address`` refuses to add a node
while ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which loopback needs: see ``unlearn_core.raycluster``), each
with ``--cpus`` CPUs and its own custom resource ``node<i>``, and prints one JSON line::

    {"address": "127.0.0.1:PORT", "temp_dir": ..., "nodes": [{"node_id": ..., "pids": [...]}, ...]}

``pids`` are the node's processes (its raylet, and for the head its GCS too) and all below them when the line
is printed. It then reads commands from stdin, one a line: ``kill I`` removes node I at once (its processes
get SIGKILL), ``pids`` prints the JSON line again with the current processes, ``quit`` (or end of input)
shuts every node down and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core import raycluster  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1)
    args = parser.parse_args()
    raycluster._set_loopback_mode(True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's socket paths must stay short: a folder directly under the system temp.
    temp_dir = tempfile.mkdtemp(prefix="urc")
    os.chmod(temp_dir, 0o700)
    from ray.cluster_utils import Cluster

    def node_args(index: int) -> dict:
        return {"num_cpus": args.cpus, "resources": {f"node{index}": 1}, "node_ip_address": "127.0.0.1",
                "include_dashboard": False}

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={**node_args(0), "temp_dir": temp_dir})
    nodes = [cluster.head_node]
    for index in range(1, args.nodes):
        nodes.append(cluster.add_node(**node_args(index)))
    cluster.wait_for_nodes()

    def describe() -> dict:
        listed = []
        for node in nodes:
            if node is None:
                listed.append(None)
                continue
            roots = [info.process.pid for infos in node.all_processes.values() for info in infos
                     if getattr(info, "process", None) is not None]
            listed.append({"node_id": node.node_id, "pids": sorted(raycluster.descendants(roots))})
        return {"address": cluster.address, "temp_dir": temp_dir, "nodes": listed}

    print(json.dumps(describe()), flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "kill":
                index = int(words[1])
                cluster.remove_node(nodes[index], allow_graceful=False)
                nodes[index] = None
                print(json.dumps({"killed": index}), flush=True)
            elif words[0] == "pids":
                print(json.dumps(describe()), flush=True)
            elif words[0] == "quit":
                break
    finally:
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
