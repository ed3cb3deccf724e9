"""Seconds per evaluation (``metrics.evaluate_outputs``) on mnist5k, and what the SVC attack's draws add.

    python benchmarks/bench_metrics.py [--forget class:3 random:0.1] [--method rl] [--repeats 3]

For each forget set: prepares mnist5k (seed 0; cached models are reused), runs
``--method`` once, and times on its unlearned outputs (median of
``--repeats``): the whole evaluation, one draw of the five SVC attacks (what a
single-draw evaluation costs), the 10 draws, SalUn's exact sampling, and the
two entropy attacks. It also prints the 10 draws of ``MIA_svc``, their mean and
95 % half-width, and SalUn's sampling, for the unlearned and the retrained
model. Run it on an idle machine: it prints the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forget", nargs="+", default=["class:3", "random:0.1"])
    parser.add_argument("--method", default="rl")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import torch

    from unlearn_core import metrics
    from unlearn_core.pipeline import prepare, run_method

    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; cores {os.cpu_count()}; "
          f"torch threads {torch.get_num_threads()}")
    for forget in args.forget:
        setup = prepare("mnist5k", None, forget, 0, device="cpu")
        run = run_method(setup, args.method)
        outputs = metrics.model_outputs(run.model, setup.bundle, setup.split, setup.device)
        bundle, split = setup.bundle, setup.split
        train_y, test_y = bundle.train_y.numpy(), bundle.test_y.numpy()
        nonmember = split.test_retain_idx
        svc_args = (outputs["retain"], train_y[split.retain_idx], outputs["test"][nonmember], test_y[nonmember],
                    outputs["forget"], train_y[split.forget_idx])
        parts = {
            "evaluate_outputs (all)": lambda: metrics.evaluate_outputs(outputs, bundle, split, 0),
            "SVC, one draw of 5 attacks": lambda: metrics.mia_svc_attacks(*svc_args, seed=0),
            "SVC, 10 draws of 5 attacks": lambda: metrics.mia_svc_draws(*svc_args, seed=0),
            "SVC, SalUn's sampling": lambda: metrics.mia_svc_salun(*svc_args),
            "entropy, both variants": lambda: (
                metrics.mia_entropy(outputs["retain"], outputs["test"], outputs["forget"], 0),
                metrics.mia_entropy(outputs["retain"], outputs["test"][nonmember], outputs["forget"], 0)),
        }
        print(f"\nmnist5k {forget}, {args.method}: {len(split.retain_idx)} remaining, {len(nonmember)} non-member "
              f"test samples, {len(split.forget_idx)} forget samples")
        seconds = {name: _median_seconds(fn, args.repeats) for name, fn in parts.items()}
        for name, value in seconds.items():
            print(f"  {name:30s} {value:7.3f} s")
        added = seconds["SVC, 10 draws of 5 attacks"] + seconds["SVC, SalUn's sampling"] \
            + seconds["entropy, both variants"] / 2 - seconds["SVC, one draw of 5 attacks"]
        print(f"  added against one draw and one entropy attack: {added:.3f} s per evaluation")
        for label, probs in (("unlearned", outputs), ("retrained", setup.outputs("retrained"))):
            args_for = (probs["retain"], train_y[split.retain_idx], probs["test"][nonmember], test_y[nonmember],
                        probs["forget"], train_y[split.forget_idx])
            draws = metrics.mia_svc_draws(*args_for, seed=0, attacks=("confidence",))["confidence"]
            mean, half, k = metrics.mean_ci95(draws)
            salun = metrics.mia_svc_salun(*args_for)["confidence"]
            print(f"  MIA_svc {label}: draws {np.round(draws, 2).tolist()} -> {mean:.2f} ± {half:.2f} (k={k}); "
                  f"SalUn's sampling {salun:.2f}")
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
