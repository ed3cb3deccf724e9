"""Sweeps: inline against Ray on one machine, Ray's per-task overhead, resume after a killed driver, a killed worker.

    .venv/bin/python benchmarks/bench_sweeps.py                # the 24-run mnist5k sweep (docs/SWEEPS.md)
    .venv/bin/python benchmarks/bench_sweeps.py --small        # an 8-run digits sweep: checks the script works

Measures, in one process and one data directory (models trained once beforehand, so every timing sees them cached):

1. the same sweep with ``--engine inline`` and with Ray (start-up and shutdown included), each into an empty run
   store, and the ratio;
2. Ray's cost per task: the round trip of an empty task, and the sweep's extra core-seconds per run over inline;
3. resume: the CLI sweep in a child process, killed (SIGKILL, whole process group) once half its runs are recorded,
   then run again: how many runs the second command trains (only those in flight may be), and that no key is recorded
   twice;
4. fault: one Ray worker killed while it executes a run: the sweep finishes with every run recorded once.

Prints a JSON summary and the load average before and after; measure on an idle machine (DEVELOPERS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FULL = dict(dataset="mnist5k", model=None, forgets=["class:3", "random:0.1"], methods=["unsc", "natmu", "rl", "ga"],
            seeds=[0, 1, 2])  # 2 forget sets x 4 methods x 3 seeds = 24 runs
SMALL = dict(dataset="digits", model="mlp", forgets=["class:3"], methods=["rl", "finetune"], seeds=[0, 1, 2, 3])


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def spec_for(config: dict, tag: str):
    from unlearn_core.sweeps import SweepSpec

    return SweepSpec(dataset=config["dataset"], model=config["model"], forgets=config["forgets"],
                     methods=config["methods"], grid={}, seeds=config["seeds"], retrains=0, tag=tag)


def warm_models(config: dict, threads: int) -> float:
    """Train (or load) every model the sweep needs, its reference timed with ``threads`` torch threads.

    A cached reference timed under other conditions is trained again when a sweep needs like-for-like speed-ups
    (training.py); warming under the engine's own conditions keeps that retraining out of the timings: torch's default
    threads before the inline sweep, one thread (as in every Ray task) before the Ray sweep.
    """
    import torch

    from unlearn_core.pipeline import prepare

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        for forget in config["forgets"]:
            for seed in config["seeds"]:
                prepare(config["dataset"], config["model"], forget, seed, device="cpu", retime_reference=True)
    finally:
        torch.set_num_threads(previous)
    return time.perf_counter() - started


def timed_sweep(config: dict, engine: str, store_path: Path, tag: str) -> dict:
    from unlearn_core.store import RunStore
    from unlearn_core.sweeps import run_sweep

    started = time.perf_counter()
    result = run_sweep(spec_for(config, tag), engine=engine, device="cpu", store=RunStore(store_path),
                       log=lambda _: None, save_checkpoints=False)
    wall = time.perf_counter() - started
    method_seconds = sum(run["metrics"].get("seconds") or 0.0 for cell in result["cells"] for run in cell["runs"])
    return {"wall_s": wall, "runs": result["ran"], "failed": sum(c["failed"] for c in result["cells"]),
            "method_seconds_sum": method_seconds}


def ray_costs(tasks: int = 200) -> dict:
    """Ray's start-up, the round trip of an empty 1-CPU task, and handing a model's weights through the object store."""
    import ray
    import torch

    from unlearn_core.sweeps import RayEngine

    started = time.perf_counter()
    engine = RayEngine()
    startup = time.perf_counter() - started
    try:
        noop = ray.remote(num_cpus=1)(lambda: None)
        ray.get([noop.remote() for _ in range(8)])  # workers up
        started = time.perf_counter()
        for _ in range(tasks // 4):
            ray.get(noop.remote())
        serial_ms = (time.perf_counter() - started) * 1000 / (tasks // 4)
        started = time.perf_counter()
        ray.get([noop.remote() for _ in range(tasks)])
        batch_ms = (time.perf_counter() - started) * 1000 / tasks
        state = {f"w{i}": torch.randn(256, 256) for i in range(4)}  # 1 MiB, a small CNN's size
        ref = ray.put(state)
        size = sum(t.numel() * 4 for t in state.values())
        reader = ray.remote(num_cpus=1)(lambda s: len(s))
        ray.get(reader.remote(ref))
        started = time.perf_counter()
        ray.get([reader.remote(ref) for _ in range(20)])
        blob_ms = (time.perf_counter() - started) * 1000 / 20
    finally:
        engine.close()
    return {"startup_s": startup, "empty_task_round_trip_ms": serial_ms, "empty_task_batched_ms": batch_ms,
            "task_with_1MiB_model_ms": blob_ms, "blob_bytes": size, "slots": engine.slots}


def cli_command(config: dict, store: Path, tag: str) -> list[str]:
    cmd = [sys.executable, "-m", "unlearn_core", "sweep", "--dataset", config["dataset"], "--seeds",
           ",".join(map(str, config["seeds"])), "--methods", ",".join(config["methods"]), "--retrains", "0",
           "--store", str(store), "--tag", tag, "--no-checkpoints", "--no-progress"]
    if config["model"]:
        cmd += ["--model", config["model"]]
    for forget in config["forgets"]:
        cmd += ["--forget", forget]
    return cmd


def _ancestors(pid: int, depth: int = 6) -> list[int]:
    out = []
    for _ in range(depth):
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        out.append(pid)
        if pid <= 1:
            break
    return out


def run_workers(root: int) -> list[int]:
    """Ray workers descending from ``root`` that are executing a run (their title is ray::execute_run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::execute_run") and root in _ancestors(int(entry.name)):
                found.append(int(entry.name))
    return found


def resume_after_killed_driver(config: dict, work: Path) -> dict:
    from unlearn_core.store import RunStore

    store_path, tag = work / "resume.sqlite", "bench-resume"
    total = len(config["forgets"]) * len(config["methods"]) * len(config["seeds"])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(cli_command(config, store_path, tag), cwd=work, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    recorded_at_kill, in_flight = None, None
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and child.poll() is None:
        if store_path.exists():
            count = len(RunStore(store_path).sweep_runs(tag)) if RunStore(store_path).get_sweep(tag) else 0
            if count >= total // 2:
                in_flight = len(run_workers(child.pid))  # runs being computed at the moment of the kill
                os.killpg(child.pid, signal.SIGKILL)  # the driver and the local Ray instance it started
                recorded_at_kill = count
                break
        time.sleep(0.2)
    child.wait()
    before = RunStore(store_path).count()
    started = time.perf_counter()
    again = subprocess.run(cli_command(config, store_path, tag), cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    match = re.search(r"(\d+) runs now, (\d+) already stored", again.stdout)
    store = RunStore(store_path)
    keys = [run["config"].get("sweep_key") for run in store.list(tag=tag) if run["status"] == "done"]
    # Lost work = the runs in flight at the kill; everything recorded before it is reused, the rest was never begun.
    return {"total_runs": total, "recorded_when_killed": recorded_at_kill, "in_flight_when_killed": in_flight,
            "rows_before_resume": before,
            "resume_exit_code": again.returncode, "trained_again": int(match.group(1)) if match else None,
            "skipped": int(match.group(2)) if match else None, "resume_wall_s": wall,
            "runs_linked_after": len(store.sweep_runs(tag)), "duplicate_done_keys": len(keys) - len(set(keys)),
            "stderr_tail": again.stderr.strip().splitlines()[-1:] if again.returncode else []}


def killed_worker(config: dict, work: Path) -> dict:
    from unlearn_core.store import RunStore
    from unlearn_core.sweeps import run_sweep

    killed: list = []
    stop = threading.Event()

    def killer():
        while not stop.is_set() and not killed:
            workers = run_workers(os.getpid())
            if workers:
                time.sleep(0.5)  # inside the run, not at its first instruction
                try:
                    os.kill(workers[0], signal.SIGKILL)
                    killed.append(workers[0])
                except ProcessLookupError:
                    continue
                return
            time.sleep(0.05)

    store = RunStore(work / "fault.sqlite")
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        result = run_sweep(spec_for(config, "bench-fault"), engine="ray", store=store, log=lambda _: None,
                           save_checkpoints=False)
    finally:
        stop.set()
        thread.join(5)
    runs = store.list(tag="bench-fault")
    keys = [run["config"]["sweep_key"] for run in runs]
    return {"killed_worker": bool(killed), "wall_s": time.perf_counter() - started, "runs_recorded": len(runs),
            "runs_done": sum(r["status"] == "done" for r in runs), "duplicate_keys": len(keys) - len(set(keys)),
            "cells_complete": all(len(c["seeds"]) == len(config["seeds"]) for c in result["cells"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="an 8-run digits sweep (checks the script, no figures)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: engines,costs,resume,fault")
    parser.add_argument("--json", default=None, help="also write the summary here")
    args = parser.parse_args()
    config = SMALL if args.small else FULL
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    work = Path(tempfile.mkdtemp(prefix="bench-sweeps-"))
    os.environ.setdefault("UNLEARN_DATA_DIR", str(Path(tempfile.gettempdir()) / "bench-sweeps-data"))
    out = {"config": config, "cpus": os.cpu_count(), "load_before": load(), "data_dir": os.environ["UNLEARN_DATA_DIR"]}
    import torch

    out["inline_threads"] = torch.get_num_threads()
    if "engines" not in skip:
        out["warm_models_inline_s"] = warm_models(config, out["inline_threads"])
        out["inline"] = timed_sweep(config, "inline", work / "inline.sqlite", "bench-inline")
        out["warm_models_ray_s"] = warm_models(config, 1)
        out["ray"] = timed_sweep(config, "ray", work / "ray.sqlite", "bench-ray")
        out["ray_speedup"] = out["inline"]["wall_s"] / out["ray"]["wall_s"]
    else:
        out["warm_models_ray_s"] = warm_models(config, 1)
    if "costs" not in skip:
        out["ray_costs"] = ray_costs()
        if "inline" in out:
            runs = out["inline"]["runs"]
            # Core-seconds per run on Ray (after start-up) minus inline's seconds per run: what a task costs beyond
            # the work (scheduling, a worker's imports, weights through the object store, one thread instead of two).
            ray_core_s = (out["ray"]["wall_s"] - out["ray_costs"]["startup_s"]) * out["ray_costs"]["slots"]
            out["extra_core_ms_per_run"] = (ray_core_s / runs - out["inline"]["wall_s"] / runs) * 1000
    if "resume" not in skip:
        out["resume"] = resume_after_killed_driver(config, work)
    if "fault" not in skip:
        out["fault"] = killed_worker(config, work)
    out["load_after"] = load()
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
