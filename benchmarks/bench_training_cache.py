"""Benchmark: train the original mnist5k model, then load it back from the checkpoint cache.

Run: ``.venv/bin/python benchmarks/bench_training_cache.py [--dataset mnist5k] [--loads 5]``
Uses a fresh temporary cache so the first request really trains.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default=None)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()

    os.environ["UNLEARN_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-cache-")
    import torch

    from unlearn_core.checkpoints import CheckpointCache
    from unlearn_core.data import load_dataset
    from unlearn_core.training import accuracy, get_original

    bundle = load_dataset(args.dataset)
    cache = CheckpointCache()
    started = time.perf_counter()
    trained = get_original(bundle, args.model, seed=0, device="cpu", cache=cache)
    train_wall = time.perf_counter() - started
    load_times = []
    for _ in range(args.loads):
        started = time.perf_counter()
        loaded = get_original(bundle, args.model, seed=0, device="cpu", cache=cache)
        load_times.append(time.perf_counter() - started)
        assert loaded.from_cache
    result = {
        "dataset": bundle.name, "model": trained.meta["model"], "device": "cpu",
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "train_seconds": round(train_wall, 2),
        "load_seconds_median": round(statistics.median(load_times), 4),
        "load_seconds_max": round(max(load_times), 4),
        "test_accuracy": round(accuracy(loaded.model, bundle.test_x, bundle.test_y), 2),
        "checkpoint_bytes": cache.path_for(trained.key).stat().st_size,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
