"""Deeper evidence of forgetting: what each measurement costs, the table over every method, the distinguisher.

Three parts, each optional (docs/EVIDENCE.md reports them):

* ``--part cost``: a UNSC run on mnist5k class 3 (run_method + build_report,
  nothing cached between repetitions) with no evidence, with curves, with the
  probe and with relearn, alternated ``--repeats`` times; wall seconds and the
  overhead of each over the plain run.
* ``--part table``: every registered method on mnist5k class 3, seed 0, with
  probe, relearn and curves; a markdown table of what the head says (Acc_f)
  against what the features and a few steps of relearning say.
* ``--part distinguisher``: the retrain-distinguisher score (a) on simulated
  confidences (normal draws) against K, delta and a shift, which says how
  many models it needs, and (b) on digits with K originals, K retrained
  models and K unlearned models per method of one fixed forget set.

    python benchmarks/bench_evidence.py --part cost --part table --part distinguisher --json out.json

Run it alone on an idle machine and state the load average (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.evidence import EvidenceRequest, distinguisher_from_models, retrain_distinguisher_score  # noqa: E402
from unlearn_core.methods import method_names  # noqa: E402
from unlearn_core.pipeline import Setup, build_report, clean_json, prepare, run_method  # noqa: E402


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def fresh(setup: Setup) -> None:
    """Forget every cached output so each repetition pays what a single CLI run pays."""
    setup._outputs.clear()


def part_cost(args) -> dict:
    setup = prepare("mnist5k", None, "class:3", 0, "cpu")
    variants = {"plain": None, "curves": "curves", "probe": "probe", "relearn": "relearn"}
    walls = {name: [] for name in variants}
    cpus = {name: [] for name in variants}
    method_seconds = {name: [] for name in variants}
    evidence_seconds = {name: [] for name in variants}
    # Warm-up: first-call costs (imports, allocator, sklearn) are not any variant's.
    fresh(setup)
    build_report(setup, run_method(setup, "unsc", evidence="curves"), evidence="probe,relearn,curves")
    for _ in range(args.repeats):
        for name, kinds in variants.items():
            fresh(setup)
            started, cpu_started = time.perf_counter(), time.process_time()
            method_started = time.perf_counter()
            run = run_method(setup, "unsc", evidence=kinds)
            method_wall = time.perf_counter() - method_started
            report = build_report(setup, run, evidence=kinds)
            walls[name].append(time.perf_counter() - started)
            cpus[name].append(time.process_time() - cpu_started)
            method_seconds[name].append(method_wall)
            evidence_seconds[name].append(sum((report.evidence or {}).get("seconds", {}).values()))
    median = {name: float(np.median(v)) for name, v in walls.items()}
    # With one thread, CPU seconds barely depend on what else the machine runs; wall seconds do (a shared machine).
    median_cpu = {name: float(np.median(v)) for name, v in cpus.items()}
    out = {"load_average": load(), "repeats": args.repeats, "wall_seconds": walls, "median_wall": median,
           "method_wall_seconds": method_seconds, "evidence_seconds": evidence_seconds,
           "overhead_percent": {name: 100.0 * (median[name] - median["plain"]) / median["plain"]
                                for name in variants if name != "plain"},
           "cpu_seconds": cpus, "median_cpu": median_cpu,
           "cpu_overhead_percent": {name: 100.0 * (median_cpu[name] - median_cpu["plain"]) / median_cpu["plain"]
                                    for name in variants if name != "plain"},
           "threads": int(torch.get_num_threads()),
           "curve_overhead_on_method_percent": 100.0 * (np.median(method_seconds["curves"])
                                                        - np.median(method_seconds["plain"]))
           / np.median(method_seconds["plain"])}
    print(json.dumps(clean_json(out), indent=1), file=sys.stderr)
    return out


def part_table(args) -> dict:
    setup = prepare("mnist5k", None, "class:3", 0, "cpu")
    request = EvidenceRequest.parse("probe,relearn,curves")
    rows = {}
    for method in args.methods or method_names():
        started = time.perf_counter()
        report = build_report(setup, run_method(setup, method, evidence=request), evidence=request)
        rows[method] = report.to_dict()
        print(f"{method}: {time.perf_counter() - started:.1f}s (load {load()})", file=sys.stderr)
    return {"load_average": load(), "reports": rows}


def markdown_table(reports: dict) -> str:
    def f(value, digits=1):
        return "-" if value is None else f"{value:.{digits}f}"

    def steps(r):
        if r["relearn_capped"]:
            return f"> {r['max_steps']}"
        return "diverged" if r["diverged"] else str(r["relearn_steps"])

    lines = ["| model | Acc_f | Acc_r | probe_forget | knn_forget | probe_retain | relearn steps | Acc_f before "
             "relearn -> target |",
             "|---|---|---|---|---|---|---|---|"]
    first = next(iter(reports.values()))
    for which in ("original", "retrained"):
        ev = first["evidence"]
        lines.append(f"| *{which}* | {f(first[which]['Acc_f'])} | {f(first[which]['Acc_r'])} | "
                     f"{f(ev['probe'][which]['probe_forget'])} | {f(ev['probe'][which]['knn_forget'])} | "
                     f"{f(ev['probe'][which]['probe_retain'])} | {steps(ev['relearn'][which])} | "
                     f"{f(ev['relearn'][which]['start_acc'])} -> {f(ev['relearn'][which]['target_acc'])} |")
    for method, report in reports.items():
        if method == "retrain":
            continue
        ev = report["evidence"]
        lines.append(f"| {method} | {f(report['unlearned']['Acc_f'])} | {f(report['unlearned']['Acc_r'])} | "
                     f"{f(ev['probe']['unlearned']['probe_forget'])} | {f(ev['probe']['unlearned']['knn_forget'])} | "
                     f"{f(ev['probe']['unlearned']['probe_retain'])} | {steps(ev['relearn']['unlearned'])} | "
                     f"{f(ev['relearn']['unlearned']['start_acc'])} -> {f(ev['relearn']['unlearned']['target_acc'])} |")
    return "\n".join(lines)


def part_distinguisher(args) -> dict:
    from unlearn_core.data import default_model_for, load_dataset
    from unlearn_core.device import pick_device
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.training import default_recipe, get_original, get_retrained

    rng = np.random.default_rng(0)
    simulated = []
    for k in (4, 8, 16, 32, 64, 128, 256, 512):
        for delta in (0.0, 0.01, 0.05):
            for shift in (0.0, 0.5, 1.0, 2.0):
                u = rng.normal(size=(args.sim_samples, k)) + shift
                r = rng.normal(size=(args.sim_samples, k))
                started = time.perf_counter()
                score = retrain_distinguisher_score(u, r, delta=delta)["score"]
                simulated.append({"K": k, "delta": delta, "shift": shift, "score": score,
                                  "seconds": time.perf_counter() - started})
    # Real models: K originals and K retrained models (seeds 0..K-1, the same forget set), K more retrained models
    # (seeds 100..) as a perfect "unlearner", and each method applied to each original.
    bundle = load_dataset("digits")
    model_name = default_model_for("digits")
    split = ForgetSpec.parse(args.dist_forget).resolve(bundle, 0)
    recipe, device = default_recipe("digits"), pick_device("cpu")
    originals = [get_original(bundle, model_name, s, recipe, device) for s in range(args.k)]
    retrained = [get_retrained(bundle, split, model_name, s, recipe, device) for s in range(args.k)]
    second = [get_retrained(bundle, split, model_name, 100 + s, recipe, device) for s in range(args.k)]
    # Training time as recorded with each checkpoint (the models may come from the cache in this run).
    train_seconds = sum(t.train_seconds for t in originals + retrained + second)
    real = {"forget": args.dist_forget, "K": args.k, "n_forget": int(len(split.forget_idx)),
            "model_seconds": train_seconds, "scores": {}}
    started = time.perf_counter()
    r = distinguisher_from_models([t.model for t in second], [t.model for t in retrained], bundle, split, device)
    real["scores"]["retrain (other seeds)"] = r["score"]
    real["score_seconds"] = time.perf_counter() - started
    real["scores"]["original"] = distinguisher_from_models([t.model for t in originals], [t.model for t in retrained],
                                                           bundle, split, device)["score"]
    for method in args.dist_methods:
        unlearned = []
        for s in range(args.k):
            setup = Setup(bundle, split, model_name, s, device, recipe, originals[s], retrained[s])
            unlearned.append(run_method(setup, method).model)
        real["scores"][method] = distinguisher_from_models(unlearned, [t.model for t in retrained], bundle, split,
                                                           device)["score"]
        print(f"distinguisher {method}: {real['scores'][method]:.3f}", file=sys.stderr)
    return {"load_average": load(), "simulated": simulated, "digits": real}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", action="append", choices=("cost", "table", "distinguisher"), required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=None, help="comma-separated (table; default: every method)")
    parser.add_argument("--k", type=int, default=8, help="models per family for the digits distinguisher")
    parser.add_argument("--dist-forget", default="random:0.1")
    parser.add_argument("--dist-methods", default="finetune,unsc,ga")
    parser.add_argument("--sim-samples", type=int, default=200)
    parser.add_argument("--json", default=None)
    parser.add_argument("--markdown", default=None, help="write the table part as markdown here")
    args = parser.parse_args()
    args.methods = [m for m in args.methods.split(",") if m] if args.methods else None
    args.dist_methods = [m for m in args.dist_methods.split(",") if m]
    print(f"load average at start: {load()}", file=sys.stderr)
    out = {"load_average_start": load()}
    for part in args.part:
        out[part] = {"cost": part_cost, "table": part_table, "distinguisher": part_distinguisher}[part](args)
    out["load_average_end"] = load()
    if "table" in out:
        text = markdown_table(out["table"]["reports"])
        print(text)
        if args.markdown:
            Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(clean_json(out), indent=1) + "\n")


if __name__ == "__main__":
    main()
