"""Benchmark: NatMU against retraining on mnist5k, for random:0.1 and class:3.

Run: ``.venv/bin/python benchmarks/bench_natmu.py [--dataset mnist5k] [--forget random:0.1 class:3]
[--repeats 3] [--param delta=-0.1 ...] [--use-cache]``

By default a fresh temporary cache is used, so the retrained reference is
really trained in this process, under the same machine load as NatMU, and
RTE (retrain seconds / NatMU seconds) compares like with like. NatMU's time
is the median of ``--repeats`` runs, after one untimed AdamW step on a dummy
tensor (the first optimizer step in a process pays seconds of one-off lazy
imports). Prints a JSON summary and a Markdown table for docs/NATMU.md.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_entropy")


def _warm_up_optimizer(torch) -> None:
    """One AdamW step on a dummy tensor: pays the optimizer's one-off lazy imports outside the timing."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.AdamW([weight])
    (weight * 2).sum().backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default=None)
    parser.add_argument("--forget", nargs="+", default=["random:0.1", "class:3"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--use-cache", action="store_true",
                        help="reuse UNLEARN_DATA_DIR's checkpoints (retrain seconds then come from when they were "
                             "trained)")
    args = parser.parse_args()
    if not args.use_cache:
        scratch = tempfile.mkdtemp(prefix="bench-natmu-")
        atexit.register(shutil.rmtree, scratch, True)
        os.environ["UNLEARN_DATA_DIR"] = scratch

    import torch

    from unlearn_core.pipeline import build_report, prepare, run_method

    params = dict(pair.split("=", 1) for pair in args.param)
    rows = []
    for forget in args.forget:
        started = time.perf_counter()
        setup = prepare(args.dataset, args.model, forget, args.seed, "cpu")
        prepare_seconds = time.perf_counter() - started
        _warm_up_optimizer(torch)
        runs = [run_method(setup, "natmu", params) for _ in range(max(1, args.repeats))]
        seconds = statistics.median(run.seconds for run in runs)
        report = build_report(setup, runs[-1])
        retrain_seconds = setup.retrained.train_seconds
        rows.append({
            "forget": forget, "n_forget": report.n_forget, "params": report.params,
            "natmu_seconds": round(seconds, 2), "natmu_seconds_all": [round(r.seconds, 2) for r in runs],
            "retrain_seconds": round(retrain_seconds, 2), "retrain_from_cache": setup.retrained.from_cache,
            "rte": round(retrain_seconds / seconds, 2), "avg_gap": round(report.avg_gap, 2),
            "prepare_seconds": round(prepare_seconds, 1),
            "hybrids": runs[-1].artifacts["hybrids"], "fallbacks": runs[-1].artifacts["fallbacks"],
            "reused": runs[-1].artifacts["reused"],
            **{f"{which}_{m}": (None if report.model_metrics(which).get(m) is None
                                   else round(report.model_metrics(which).get(m), 2))
               for which in ("original", "unlearned", "retrained") for m in METRICS},
        })
        print(json.dumps(rows[-1]), flush=True)  # each row as soon as it is done: runs are long on CPU
    summary = {"dataset": args.dataset, "model": setup.model_name, "device": "cpu",
               "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "python": platform.python_version(), "torch": torch.__version__,
               "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()], "rows": rows}
    print(json.dumps(summary, indent=2))
    print()
    print("| forget | NatMU s | retrain s | RTE | Avg. Gap | FA (NatMU / retrain) | TA | Acc_f | Acc_r | "
          "MIA_entropy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        def pair(metric: str) -> str:
            u, r = row[f"unlearned_{metric}"], row[f"retrained_{metric}"]
            return "n/a" if u is None else f"{u:.2f} / {r:.2f}"
        print(f"| {row['forget']} | {row['natmu_seconds']:.2f} | {row['retrain_seconds']:.2f} | {row['rte']:.2f} | "
              f"{row['avg_gap']:.2f} | {pair('FA')} | {pair('TA')} | {pair('Acc_f')} | {pair('Acc_r')} | "
              f"{pair('MIA_entropy')} |")


if __name__ == "__main__":
    main()
