"""What the ensemble verdicts cost: forget quality, KLoM and U-LiRA at K models per family on synthetic phi.

The inputs are synthetic (no model is trained): per sample a retrained mean
and spread, K retrained draws, and K unlearned draws of which half the
samples are shifted (a partly hiding method), at the sizes a run keeps
(docs/METRICS.md):

* digits class 3: 146 forget, 500 retain, 359 validation samples;
* mnist5k class 3: 400 forget, 500 retain, 500 validation samples.

    python benchmarks/bench_verdicts.py --k 8 --repeats 3

Each verdict is timed on its own and the whole :func:`ensemble_verdicts`
call; the minimum wall and process-CPU seconds over ``--repeats`` are
reported with the load average.
Run it alone on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.evidence import (RunOutputs, ensemble_verdicts, forget_quality_from_confidences,  # noqa: E402
                                   klom_by_split, ulira_by_split)

SIZES = {"digits": {"forget": 146, "retain": 500, "validation": 359},
         "mnist5k": {"forget": 400, "retain": 500, "validation": 500}}


def synthetic_runs(k: int, sizes: dict, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    means = {s: rng.uniform(-4, 8, n) for s, n in sizes.items()}
    spreads = {s: rng.uniform(0.1, 2.0, n) for s, n in sizes.items()}
    shift = {s: np.where(rng.random(n) < 0.5, 2.0, 0.0) if s == "forget" else np.zeros(n) for s, n in sizes.items()}

    def run(offset: dict) -> RunOutputs:
        return RunOutputs({s: np.arange(n) for s, n in sizes.items()},
                          {"forget": "train", "retain": "train", "validation": "test"},
                          {s: (means[s] + offset[s] + spreads[s] * rng.standard_normal(n)).astype(np.float32)
                           for s, n in sizes.items()})

    zero = {s: np.zeros(n) for s, n in sizes.items()}
    return [run(shift) for _ in range(k)], [run(zero) for _ in range(k)]


def timed(fn, repeats: int) -> dict:
    """The minimum wall and process-CPU seconds over ``repeats`` calls (CPU time is less moved by other load)."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return {"wall": wall, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    out = {"k": args.k, "load_before": os.getloadavg()}
    for name, sizes in SIZES.items():
        unlearned, retrained = synthetic_runs(args.k, sizes, seed=0)
        u = {s: np.stack([r.phi[s] for r in unlearned]).astype(np.float64) for s in sizes}
        r = {s: np.stack([x.phi[s] for x in retrained]).astype(np.float64) for s in sizes}
        row = {
            "forget_quality": timed(lambda: forget_quality_from_confidences(u["forget"], r["forget"]), args.repeats),
            "klom_3_splits": timed(lambda: klom_by_split(u, r), args.repeats),
            "ulira_forget_retain": timed(lambda: ulira_by_split({s: u[s] for s in ("forget", "retain")},
                                                                {s: r[s] for s in ("forget", "retain")}),
                                         args.repeats),
            "ensemble_verdicts": timed(lambda: ensemble_verdicts(unlearned, retrained), args.repeats),
        }
        verdicts = ensemble_verdicts(unlearned, retrained).to_dict()
        row["values"] = {"forget_quality": verdicts["forget_quality"], "klom_p95": verdicts["klom_p95"],
                         "ulira_tpr_at_1fpr": verdicts["ulira"]["tpr_at_1fpr"]}
        out[name] = {"sizes": sizes, "seconds": {k: v for k, v in row.items() if k != "values"},
                     "values": row["values"]}
        print(f"{name:8s} sizes {sizes}")
        for key, value in out[name]["seconds"].items():
            print(f"  {key:22s} wall {value['wall']:7.3f} s   cpu {value['cpu']:7.3f} s")
    out["load_after"] = os.getloadavg()
    print("load average before", " ".join(f"{v:.2f}" for v in out["load_before"]), "after",
          " ".join(f"{v:.2f}" for v in out["load_after"]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
