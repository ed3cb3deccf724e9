"""Benchmark of UNSC: the subspace build against a release-style reference, and UNSC against retraining.

Three ways to build every layer's retained subspace of the same model on the
same remaining samples, each in its own process (so peak memory is its own):

* ``ours``: :func:`unlearn_core.nullspace.build_retained_space`: Gram
  matrices accumulated batch by batch with the layers' real padding, stride
  and dilation, then one eigendecomposition per layer.
* ``ours-release-unfold``: the same Gram path fed with the release's
  unfolding (stride 1, no padding), for a like-for-like rank check.
* ``release``: what the authors' release does, written here from its
  description: the full representation matrix in float64, filled with Python
  loops over samples and output locations (stride 1, no padding), then an
  SVD.

Then UNSC with its default parameters against retraining from scratch, both
timed in this run (wall and CPU seconds; the machine may be shared).

    python benchmarks/bench_unsc.py --dataset mnist5k --per-class 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn_core.data import load_dataset, to_float  # noqa: E402
from unlearn_core.forget import ForgetSpec  # noqa: E402
from unlearn_core.nullspace import (LayerEnergy, build_retained_space, layer_input_dim, make_spectrum,  # noqa: E402
                                    rank_for_energy, sample_per_class, tracked_layers)
from unlearn_core.training import default_recipe, get_original  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_inputs(args):
    bundle = load_dataset(args.dataset)
    model_name = args.model or bundle.default_model
    device = torch.device("cpu")
    original = get_original(bundle, model_name, args.seed, default_recipe(bundle.name), device).model.eval()
    split = ForgetSpec.parse(args.forget).resolve(bundle, args.seed)
    by_class = sample_per_class(bundle.train_y.numpy(), np.asarray(split.retain_idx), args.per_class, args.seed)
    chosen = np.sort(np.concatenate(list(by_class.values())))
    # One-time library start-up (thread pools, LAPACK) is not part of any build: pay it before timing.
    torch.linalg.eigh(torch.eye(8, dtype=torch.float64) + 1)
    np.linalg.svd(np.eye(8) + 1)
    with torch.no_grad():
        original(to_float(bundle.train_x[:8]))
    return bundle, split, original, bundle.train_x[torch.as_tensor(chosen)], device


@torch.no_grad()
def gram_with_release_unfolding(model: nn.Module, images: torch.Tensor, eps: float) -> dict[str, int]:
    """Our Gram/eigen path, but with stride-1, unpadded unfolding as in the release."""
    layers = tracked_layers(model)
    energy = {name: LayerEnergy(layer_input_dim(module)) for name, module in layers.items()}

    def hook(name):
        def record(module, inputs):
            x = inputs[0]
            if isinstance(module, nn.Conv2d):
                patches = F.unfold(x, module.kernel_size)
                rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
            else:
                rows = x.reshape(-1, x.shape[-1])
            energy[name].add(rows)
        return record

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in layers.items()]
    try:
        for start in range(0, len(images), 256):
            model(to_float(images[start:start + 256]))
    finally:
        for handle in handles:
            handle.remove()
    ranks = {}
    for name, module in layers.items():
        spectrum = make_spectrum(name, module, energy[name].eigenpairs(), energy[name].columns)
        spectrum.basis(eps)  # the release's SVD yields the basis too: compute ours, not only the rank
        ranks[name] = spectrum.rank(eps)
    return ranks


@torch.no_grad()
def release_reference(model: nn.Module, images: torch.Tensor, eps: float) -> tuple[dict[str, int], dict]:
    """Full float64 representation matrices built with Python loops, then an SVD per layer."""
    layers = tracked_layers(model)
    activations: dict[str, torch.Tensor] = {}
    handles = [module.register_forward_pre_hook(
        lambda module, inputs, name=name: activations.__setitem__(name, inputs[0].detach().clone()))
        for name, module in layers.items()]
    try:
        model(to_float(images))
    finally:
        for handle in handles:
            handle.remove()
    ranks, seconds = {}, {"build": 0.0, "svd": 0.0}
    for name, module in layers.items():
        act = activations[name].numpy().astype(np.float64)
        started = time.perf_counter()
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            out_h, out_w = act.shape[2] - kh + 1, act.shape[3] - kw + 1
            matrix = np.zeros((layer_input_dim(module), act.shape[0] * max(out_h, 0) * max(out_w, 0)))
            column = 0
            for sample in range(act.shape[0]):
                for i in range(out_h):
                    for j in range(out_w):
                        matrix[:, column] = act[sample, :, i:i + kh, j:j + kw].reshape(-1)
                        column += 1
        else:
            matrix = act.reshape(act.shape[0], -1).T.copy()
        seconds["build"] += time.perf_counter() - started
        started = time.perf_counter()
        if matrix.shape[1] == 0:
            ranks[name] = 0  # the release leaves such a layer unconstrained
        else:
            _, singular, _ = np.linalg.svd(matrix, full_matrices=False)
            ranks[name] = rank_for_energy(singular ** 2, eps)
        seconds["svd"] += time.perf_counter() - started
    return ranks, seconds


def run_phase(args) -> dict:
    _, _, original, images, device = load_inputs(args)
    before = peak_rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    extra = {}
    if args.phase == "ours":
        space = build_retained_space(original, images, args.eps, device)
        for name in space.layers:
            space.basis(name)  # bases are computed lazily; the release's SVD yields them, so time ours too
        ranks = space.ranks()
        extra["input_dims"] = {row["layer"]: row["input_dim"] for row in space.rank_table()}
        extra["columns"] = {row["layer"]: row["columns"] for row in space.rank_table()}
    elif args.phase == "ours-release-unfold":
        ranks = gram_with_release_unfolding(original, images, args.eps)
    else:
        ranks, extra["split_seconds"] = release_reference(original, images, args.eps)
    return {"phase": args.phase, "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
            "peak_rss_growth_mib": peak_rss_mib() - before, "samples": len(images), "ranks": ranks, **extra}


def run_rte(args) -> dict:
    from unlearn_core.pipeline import build_report, run_method, Setup
    from unlearn_core.training import train_supervised, TrainedModel
    from unlearn_core.models import build_for_dataset

    bundle, split, _, _, device = load_inputs(args)
    recipe = default_recipe(bundle.name)
    model_name = args.model or bundle.default_model
    original = get_original(bundle, model_name, args.seed, recipe, device)
    # Retrain from scratch here (never from the cache) so both times come from the same conditions.
    retrained = build_for_dataset(model_name, bundle, seed=args.seed)
    idx = torch.as_tensor(split.retain_idx, dtype=torch.long)
    wall, cpu = time.perf_counter(), time.process_time()
    train_supervised(retrained, bundle.train_x[idx], bundle.train_y[idx], recipe, device, args.seed,
                     augmentation=bundle.augmentation, padding=bundle.crop_padding)
    retrain_wall, retrain_cpu = time.perf_counter() - wall, time.process_time() - cpu
    setup = Setup(bundle, split, model_name, args.seed, device, recipe, original,
                  TrainedModel(retrained, "bench", {"seconds": retrain_wall}, False, 0.0))
    runs = []
    for _ in range(args.repeats):
        cpu = time.process_time()
        run = run_method(setup, "unsc")
        runs.append((run.seconds, time.process_time() - cpu, run))
    best = min(runs, key=lambda item: item[0])
    report = build_report(setup, best[2])
    return {"retrain_seconds": retrain_wall, "retrain_cpu_seconds": retrain_cpu,
            "unsc_seconds": [r[0] for r in runs], "unsc_cpu_seconds": [r[1] for r in runs],
            "subspace_seconds": [r[2].artifacts["subspace_seconds"] for r in runs],
            "rte_wall_best": retrain_wall / best[0], "rte_cpu_best": retrain_cpu / min(r[1] for r in runs),
            "params": report.params,
            "unlearned": {k: report.unlearned.get(k) for k in ("Acc_f", "Acc_r", "FA", "RA", "TA")},
            "retrained": {k: report.retrained.get(k) for k in ("Acc_f", "Acc_r", "FA", "RA", "TA")},
            "original": {k: report.original.get(k) for k in ("Acc_f", "Acc_r", "FA", "RA", "TA")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default=None)
    parser.add_argument("--forget", default="class:3")
    parser.add_argument("--per-class", type=int, default=100, help="remaining samples per class for the subspace")
    parser.add_argument("--eps", type=float, default=0.99)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="UNSC runs in the RTE part (the fastest is used)")
    parser.add_argument("--phase", choices=("ours", "ours-release-unfold", "release", "rte"), default=None)
    parser.add_argument("--skip-rte", action="store_true")
    parser.add_argument("--json", default=None, help="write all results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.phase is not None:
        result = run_rte(args) if args.phase == "rte" else run_phase(args)
        print(json.dumps(result))
        return 0

    results = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "load_average_at_start": os.getloadavg()}, "args": vars(args)}
    base = [sys.executable, __file__, "--dataset", args.dataset, "--forget", args.forget, "--per-class",
            str(args.per_class), "--eps", str(args.eps), "--seed", str(args.seed), "--threads", str(args.threads),
            "--repeats", str(args.repeats)] + (["--model", args.model] if args.model else [])
    env = dict(os.environ)
    if args.threads:
        # numpy's BLAS and torch's OpenMP pools both get the same thread count, so the comparison is even.
        env.update({key: str(args.threads) for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    phases = ["ours", "ours-release-unfold", "release"] + ([] if args.skip_rte else ["rte"])
    for phase in phases:
        out = subprocess.run(base + ["--phase", phase], capture_output=True, text=True, check=True,
                             env=env)
        results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
        print(phase, json.dumps(results[phase]), flush=True)
    ours, same_unfold, release = results["ours"], results["ours-release-unfold"], results["release"]
    results["speedup_vs_release"] = release["seconds"] / ours["seconds"]
    results["speedup_same_unfolding"] = release["seconds"] / same_unfold["seconds"]
    results["ranks_equal_same_unfolding"] = same_unfold["ranks"] == release["ranks"]
    results["load_average_at_end"] = os.getloadavg()
    print(f"subspace build: ours {ours['seconds']:.2f} s, release-style {release['seconds']:.2f} s "
          f"({results['speedup_vs_release']:.1f}x); same unfolding {same_unfold['seconds']:.2f} s "
          f"({results['speedup_same_unfolding']:.1f}x), ranks equal: {results['ranks_equal_same_unfolding']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
