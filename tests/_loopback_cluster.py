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

Imported (the tests' directory is on ``sys.path``), it gives the tests :func:`start_cluster`, :func:`send`
and :func:`stop_cluster` for that script, and what they check with: the TCP sockets a set of processes listens
on (``/proc/net/tcp`` and ``tcp6``), and whether processes are still running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core import raycluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# -- for the tests: processes, sockets, the cluster as a child -----------------------------------------------------
def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    except OSError:
        pass
    return inodes


def _decode_address(text: str) -> str:
    """An address of /proc/net/tcp{,6} (little-endian hex words) as text."""
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listening_addresses(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in state LISTEN that one of ``pids`` holds."""
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in owner:
                address, port = local.split(":")
                found.append((owner[inode], _decode_address(address), int(port, 16)))
    return found


def is_loopback_address(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or address.startswith("::ffff:127.")


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [pid for pid in pids if running(pid)]
        if not left:
            return []
        time.sleep(0.2)
    return [pid for pid in pids if running(pid)]


def child_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.pop(raycluster.LOOPBACK_ENV, None)
    env["UNLEARN_DATA_DIR"] = str(tmp_path / "data")
    env["PYTHONPATH"] = str(REPO)
    return env


def start_cluster(tmp_path: Path, nodes: int = 2, cpus: int = 1, env: dict | None = None):
    """This script in a folder of its own, with no path to this checkout in its environment (its workers can
    import ``unlearn_core`` only from what a job ships them); returns the process and its first JSON line."""
    env = dict(env or child_env(tmp_path))
    env.pop("PYTHONPATH", None)
    home = tmp_path / "cluster"
    home.mkdir(parents=True, exist_ok=True)
    # Ray's own messages go to a file: a pipe nobody reads would fill and block the nodes.
    with open(home / "stderr.txt", "w") as errors:
        process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--nodes", str(nodes),
                                    "--cpus", str(cpus)], cwd=home, env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=errors, text=True)
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError("the loopback cluster did not start: " + (home / "stderr.txt").read_text()[-3000:])
    return process, json.loads(line)


def send(process: subprocess.Popen, command: str) -> dict:
    """One command to the cluster script; its JSON answer."""
    process.stdin.write(command + "\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def stop_cluster(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            process.stdin.write("quit\n")
            process.stdin.flush()
            process.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()



# -- the script ----------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1)
    args = parser.parse_args()
    raycluster.set_loopback_mode(True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's socket paths must stay short: a folder directly under the system temp.
    temp_dir = tempfile.mkdtemp(prefix="urc")
    os.chmod(temp_dir, 0o700)
    # Ray's Cluster writes its address to <RAY_TMPDIR or /tmp>/ray/ray_current_cluster and the added nodes keep
    # their sessions there; /tmp/ray is missing on a fresh machine (and would be shared): this cluster's own.
    os.environ["RAY_TMPDIR"] = temp_dir
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
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
