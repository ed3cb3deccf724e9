"""How many models the ensemble verdicts need: the methods' rank at K = 4, 8, 16 and what a cell costs.

Runs (or resumes: runs already in the store are reused by key) one sweep of
``--methods`` on one forget set with seeds ``0 .. kmax - 1`` and ``--retrains``
retrained models, then scores every method at each K in ``--ks`` from the
store alone, on the first K runs and the first K retrained models (seeds in
order) with :func:`unlearn_core.evidence.ensemble_verdicts`:

* ``forget_quality``: the competition's released score (higher = closer to retraining);
* ``klom_p95_forget``: KLoM's 95th percentile on the forget samples (lower = closer);
* ``tpr_at_1fpr``: U-LiRA's TPR at 1 % FPR on the forget set (lower = closer).

A ``retrain`` row scores K *other* retrained models (seeds K .. 2K - 1) against
the first K: the value a perfect unlearner gets at that K (it needs 2K
retrained models, so ``--retrains 2*kmax`` for every K).

The rank of the methods per verdict at each K is compared with the rank at the
largest K by Kendall's tau (``scipy.stats.kendalltau``, ties averaged). Cost
per cell at K: K unlearning runs and K retrained models (plus the originals:
one under ``--protocol competition``, K under ``seeds``), their seconds as the
store recorded them (the method's own time; a retrained model's training time),
and the verdicts' own seconds.

    python benchmarks/bench_rank_stability.py --dataset digits --model mlp --kmax 16 --retrains 32
    python benchmarks/bench_rank_stability.py --dataset mnist5k --kmax 16 --retrains 16 \\
        --store /tmp/ranks.sqlite --engine ray

Run it alone on an idle machine; the load average is written with the results.
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

from unlearn_core.evidence import RunOutputs, ensemble_verdicts  # noqa: E402
from unlearn_core.store import RunStore  # noqa: E402
from unlearn_core.sweeps import SweepSpec, run_sweep, validate  # noqa: E402

VERDICTS = {"forget_quality": -1, "klom_p95_forget": 1, "tpr_at_1fpr": 1}  # sign: lower rank value = better


def verdict_row(unlearned: list[dict], retrained: list[dict], protocol: str) -> dict:
    result = ensemble_verdicts([RunOutputs.from_dict(r["report"]["verdict_outputs"]) for r in unlearned],
                               [RunOutputs.from_dict(r["report"]["verdict_outputs"]) for r in retrained],
                               protocol=protocol).to_dict()
    return {"forget_quality": result["forget_quality"], "klom_p95_forget": result["klom_p95"]["forget"],
            "klom_p95_retain": result["klom_p95"].get("retain"),
            "klom_p95_validation": result["klom_p95"].get("validation"),
            "tpr_at_1fpr": result["ulira"]["tpr_at_1fpr"], "auc": result["ulira"]["auc"],
            "verdict_seconds": result["seconds"],
            "model_seconds": float(sum((r["seconds"] or 0.0) for r in unlearned + retrained)),
            "FA": float(np.mean([r["report"]["unlearned"]["FA"] for r in unlearned])),
            "TA": float(np.mean([r["report"]["unlearned"]["TA"] for r in unlearned]))}


def ranks(rows: dict, verdict: str) -> dict:
    """Rank 1 = closest to retraining; ties share the mean rank."""
    from scipy.stats import rankdata

    methods = sorted(m for m in rows if rows[m] is not None and m != "retrain")
    values = [VERDICTS[verdict] * rows[m][verdict] for m in methods]
    return dict(zip(methods, rankdata(values).tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default=None)
    parser.add_argument("--forget", default="class:3")
    parser.add_argument("--methods", default="unsc,natmu,scrub,salun,ga,finetune")
    parser.add_argument("--kmax", type=int, default=16)
    parser.add_argument("--ks", default="4,8,16")
    parser.add_argument("--retrains", type=int, default=None, help="default: 2 * kmax (the retrain row at every K)")
    parser.add_argument("--protocol", default="competition", choices=["competition", "seeds"])
    parser.add_argument("--engine", default="inline", choices=["inline", "ray"])
    parser.add_argument("--store", default=None, help="run store (default: the data directory's)")
    parser.add_argument("--from-tag", default=None,
                        help="score the stored sweep with this tag instead of running one (no training)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    out: dict = {"args": vars(args), "load_before": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    store = RunStore(args.store)  # None: the data directory's
    if args.from_tag:
        # Run keys hold the code's commit: a sweep stored by another commit is read, not rerun.
        tag = args.from_tag
    else:
        spec = validate(SweepSpec(dataset=args.dataset, model=args.model, forgets=[args.forget],
                                  methods=args.methods.split(","), seeds=list(range(args.kmax)),
                                  retrains=args.retrains or 2 * args.kmax, protocol=args.protocol,
                                  tag=f"ranks-{args.dataset}-{args.protocol}-{args.kmax}"))
        started = time.perf_counter()
        swept = run_sweep(spec, engine=args.engine, store=store)
        out["sweep_seconds"] = time.perf_counter() - started
        out["sweep_ran"] = swept.get("ran")
        tag = spec.tag
    runs = [r for r in store.sweep_runs(tag) if r["status"] == "done"]
    references = sorted((r for r in runs if r["role"] == "reference"), key=lambda r: r["seed"])
    by_method: dict[str, list] = {}
    for run in runs:
        if run["role"] == "run":
            by_method.setdefault(run["method"], []).append(run)
    out["per_k"] = {}
    for k in ks:
        rows = {}
        for method, method_runs in sorted(by_method.items()):
            chosen = sorted(method_runs, key=lambda r: r["seed"])[:k]
            rows[method] = verdict_row(chosen, references[:k], args.protocol) if len(chosen) >= k else None
        if len(references) >= 2 * k:
            rows["retrain"] = verdict_row(references[k:2 * k], references[:k], args.protocol)
        out["per_k"][k] = {"rows": rows, "ranks": {v: ranks(rows, v) for v in VERDICTS}}
    from scipy.stats import kendalltau

    top = max(ks)
    out["tau_vs_largest_k"] = {}
    for k in ks:
        out["tau_vs_largest_k"][k] = {}
        for verdict in VERDICTS:
            a, b = out["per_k"][k]["ranks"][verdict], out["per_k"][top]["ranks"][verdict]
            common = sorted(set(a) & set(b))
            tau = kendalltau([a[m] for m in common], [b[m] for m in common]).statistic if len(common) > 2 else None
            out["tau_vs_largest_k"][k][verdict] = None if tau is None or np.isnan(tau) else float(tau)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
