"""Pick the compute device (cuda, then mps, then cpu, unless overridden), seed and pin the run, record timing."""

from __future__ import annotations

import contextlib
import os
import time

import torch

from unlearn_core.errors import UnlearnError

VALID_DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(override: str | None = None) -> torch.device:
    """Return the device to compute on.

    ``override`` may be ``None``/``"auto"`` (best available), ``"cpu"``,
    ``"cuda"``, ``"cuda:N"`` or ``"mps"``. Asking for an accelerator that is
    not present raises :class:`UnlearnError` rather than failing later.
    """
    choice = (override or "auto").strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UnlearnError(f"device {override!r} requested but CUDA is not available on this machine")
        return torch.device(choice)
    if choice == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UnlearnError("device 'mps' requested but MPS is not available on this machine")
        return torch.device("mps")
    raise UnlearnError(f"unknown device {override!r}; choose one of {', '.join(VALID_DEVICES)} or cuda:N")


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device):
    """Seed torch's global generators inside a fork, restoring the caller's state afterwards.

    Dropout (and anything else that draws without an explicit generator) uses
    the global generators; seeding them here makes one seed give one model,
    without disturbing the random state of whoever called us.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


# cuBLAS's documented setting for reproducible results on CUDA >= 10.2 (two 4 MiB workspaces, no more).
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def deterministic_mode(threads: int = 1):
    """Run the block with torch's deterministic algorithms and a fixed intra-op thread count.

    Inside: ``torch.use_deterministic_algorithms(True)`` (an operation with
    no deterministic implementation raises instead of running),
    cuDNN's deterministic flag on and its autotuner off,
    ``torch.set_num_threads(threads)``, and ``CUBLAS_WORKSPACE_CONFIG`` set to
    ``:4096:8`` unless already set (cuBLAS reads it when torch first creates
    its workspace, so enter this before the first CUDA operation of the
    process). Everything is restored on exit.

    What it fixes: the same seed, code, data, device type and torch build
    give bit-identical weights whatever thread count the process started
    with, because every run computes with ``threads`` threads. What it does
    not: two different ``threads`` values, or another device, CPU type or
    torch build, may still order floating-point reductions differently
    (docs/REPRODUCIBILITY.md). :func:`timing_conditions` records
    ``deterministic`` and ``threads`` with every timed run.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UnlearnError(f"deterministic mode needs a whole number of threads >= 1, got {str(threads)[:40]}")
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.get_num_threads(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    previous_cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if previous_cublas is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC_WORKSPACE
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        enabled, warn_only, old_threads, cudnn_deterministic, cudnn_benchmark = previous
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.deterministic = cudnn_deterministic
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if previous_cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


# Two timings are compared only when the other work on the machine while they ran differs by less than this share
# of its cores (half a core on the 2-core development machine): there, UNSC's RTE moved from 7 to 0.8 between an
# idle and a loaded process.
LOAD_TOLERANCE_PER_CORE = 0.25


def _system_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux ``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy.
    busy = sum(values) - values[3] - (values[4] if len(values) > 4 else 0)
    # guest and guest_nice are already counted inside user and nice.
    busy -= sum(values[8:10])
    return busy / ticks


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def timing_conditions(device: torch.device | str) -> dict:
    """What a wall-clock time depends on besides the code: device, torch threads, load at the start.

    Recorded beside every time the project measures (training the reference,
    running a method) so two times are only divided when they are like for like.
    ``deterministic`` says whether torch's deterministic algorithms were on
    (:func:`deterministic_mode`): with ``threads`` it tells whether a run can
    be reproduced bit for bit.
    """
    try:
        load = round(float(os.getloadavg()[0]), 2)
    except (OSError, AttributeError):  # not every platform has a load average
        load = None
    return {"device": torch.device(device).type, "threads": int(torch.get_num_threads()),
            "load_avg_1m": load, "cpu_count": os.cpu_count() or 1,
            "deterministic": bool(torch.are_deterministic_algorithms_enabled())}


class TimedConditions:
    """Context manager recording :func:`timing_conditions` at the start and the contention during the interval.

    ``conditions["other_load"]`` is the average number of cores other
    processes kept busy while the block ran (system busy CPU time minus this
    process's, over the wall time). Unlike the load average at the start, it
    covers exactly the timed interval and does not count this process itself.
    """

    # The three clocks, as attributes so a test can drive them.
    wall_clock = staticmethod(time.perf_counter)
    system_clock = staticmethod(_system_busy_seconds)
    own_clock = staticmethod(_own_cpu_seconds)

    def __init__(self, device: torch.device | str):
        self.device = device
        self.conditions: dict = {}

    def __enter__(self) -> "TimedConditions":
        self.conditions = timing_conditions(self.device)
        self._system = self.system_clock()
        self._own = self.own_clock()
        self._wall = self.wall_clock()
        return self

    def __exit__(self, *exc) -> None:
        wall = self.wall_clock() - self._wall
        system = self.system_clock()
        if self._system is not None and system is not None and wall > 0:
            others = (system - self._system) - (self.own_clock() - self._own)
            self.conditions["other_load"] = round(max(others / wall, 0.0), 2)


def timing_mismatch(a: dict | None, b: dict | None) -> str | None:
    """Why two timings are not comparable (one line), or ``None`` when they are.

    Not comparable: either side unrecorded (a checkpoint saved without its
    timing conditions), another device type, another torch thread count, or other work
    on the machine differing by more than :data:`LOAD_TOLERANCE_PER_CORE` x
    cores (measured during each interval; the load average at the start when
    an interval measurement is missing).
    """
    if not a or not b:
        return "one of the two times was recorded without its conditions"
    if a.get("device") != b.get("device"):
        return f"timed on {a.get('device')} vs {b.get('device')}"
    if a.get("threads") != b.get("threads"):
        return f"timed with {a.get('threads')} vs {b.get('threads')} torch threads"
    key = "other_load" if a.get("other_load") is not None and b.get("other_load") is not None else "load_avg_1m"
    load_a, load_b = a.get(key), b.get(key)
    if load_a is not None and load_b is not None:
        cores = max(int(a.get("cpu_count") or 1), 1)
        if abs(load_a - load_b) > LOAD_TOLERANCE_PER_CORE * cores:
            what = "other processes' load" if key == "other_load" else "load average"
            return f"{what} {load_a:g} vs {load_b:g} on {cores} cores"
    return None
