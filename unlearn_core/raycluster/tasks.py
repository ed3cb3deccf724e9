"""What runs inside a Ray task and what it asks for: the node it runs on, the progress channel a driver hears it
through, the CPUs and GPUs each run requests, and the one line that says where runs execute."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from unlearn_core.raycluster.addresses import RayClusterError
from unlearn_core.raycluster.session import RaySession

#: What a task reports as its node when it runs in this process (the inline engine).
LOCAL_NODE = "local"


def node_id() -> str:
    """Ray's id of the node this code runs on, in a Ray worker; ``"local"`` in any other process."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return LOCAL_NODE
    try:
        context = ray.get_runtime_context()
        if context.worker.mode != ray.WORKER_MODE:
            return LOCAL_NODE  # the driver: the inline engine runs here
        return context.get_node_id()
    except Exception:
        return LOCAL_NODE


class ProgressChannel:
    """Progress events and cancel flags by task key: the body of the small Ray actor through which a driver
    hears a task's progress and tells it to stop (here, away from torch, so the actor's process stays small;
    ``unlearn_core.sweeps.single`` has the task's side)."""

    def __init__(self):
        self._events: dict[str, list[dict]] = {}
        self._cancelled: set[str] = set()

    def post(self, key: str, event: dict) -> None:
        self._events.setdefault(key, []).append(event)

    def drain(self, key: str) -> list[dict]:
        return self._events.pop(key, [])

    def cancel(self, key: str) -> None:
        self._cancelled.add(key)

    def cancelled(self, key: str) -> bool:
        return key in self._cancelled

    def forget(self, key: str) -> None:
        self._events.pop(key, None)
        self._cancelled.discard(key)


@dataclass(frozen=True)
class ResourceRequest:
    """What each run task asks of Ray, and how many such tasks the cluster can run at once."""

    num_cpus: float
    num_gpus: float
    slots: int


def resource_request(nodes: list[dict], gpus_per_run: float = 0.0, cpus_per_run: float = 1.0) -> ResourceRequest:
    """The request for ``gpus_per_run`` GPUs per run, given each alive node's resources (``{"CPU": .., "GPU": ..}``).

    A task runs on one node, so slots are counted per node: ``min(floor(CPU / cpus_per_run),
    floor(GPU / gpus_per_run))`` (the GPU term only when GPUs are asked), summed over nodes. Ray accepts a
    fraction of a GPU below 1 and whole GPUs above; anything else, or GPUs asked of a cluster where no node can
    give them, raises :class:`RayClusterError`.
    """
    gpus = float(gpus_per_run or 0.0)
    if not math.isfinite(gpus) or gpus < 0:
        raise RayClusterError(f"--gpus-per-run must be 0 or more, got {gpus_per_run!r}")
    if gpus > 1 and not gpus.is_integer():
        raise RayClusterError(f"--gpus-per-run above 1 must be a whole number of GPUs, got {gpus_per_run!r}")
    eps = 1e-9  # 1.0 / 0.1 is 9.999999999999998 in floating point
    slots = 0
    for node in nodes:
        resources = node.get("resources", node)
        node_slots = math.floor(float(resources.get("CPU", 0)) / cpus_per_run + eps)
        if gpus > 0:
            node_slots = min(node_slots, math.floor(float(resources.get("GPU", 0)) / gpus + eps))
        slots += max(0, node_slots)
    if gpus > 0 and slots == 0:
        have = sum(float(node.get("resources", node).get("GPU", 0)) for node in nodes)
        if have <= 0:
            raise RayClusterError("--gpus-per-run asks for GPUs but the Ray cluster has none")
        raise RayClusterError(f"--gpus-per-run {gpus:g}: no node of the Ray cluster has that many GPUs")
    return ResourceRequest(num_cpus=cpus_per_run, num_gpus=gpus, slots=max(1, slots))


def where_runs_execute(engine: str, session: RaySession | None = None) -> str:
    """The Setup page's line: ``"this process"`` inline, else the Ray session's :meth:`RaySession.describe`."""
    if engine == "inline" or session is None:
        return "this process"
    return session.describe()
