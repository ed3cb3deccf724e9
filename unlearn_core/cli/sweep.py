"""The ``sweep`` command: methods x parameter grids x forget sets x seeds, on Ray or inline, or a search."""

from __future__ import annotations

import argparse
import sys

from unlearn_core.cli.common import (human_stream, add_deterministic, CliError, add_evidence_flags, check_outputs, evidence_request, store_for_recording,
                                     whole_text, write_output)


SWEEP_EXAMPLE = """example:
  python -m unlearn_core sweep --dataset digits --model mlp \\
      --forget class:1 --forget random:0.1 --methods unsc,natmu,ga,rl \\
      --grid ga.lr=1e-3,2e-3,4e-3 --grid ga.epochs=3,5 --seeds 0,1,2 --retrains 3 \\
      --tag my-sweep --json sweep.json --csv sweep.csv

Running the same command again trains nothing new (runs are keyed by everything that determines them).
--address HOST:PORT (the head's GCS), ray://HOST:PORT or auto joins an existing Ray cluster (docs/SWEEPS.md)."""


def add_parsers(commands) -> None:
    sweep = commands.add_parser("sweep", help="many runs: methods x parameter grids x forget sets x seeds, on Ray",
                                description="Run every (forget set, method, grid point) once per seed, with a "
                                            "reference ensemble of retrained models, on Ray (default) or inline.",
                                epilog=SWEEP_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.set_defaults(handler=cmd_sweep)
    sweep.add_argument("--dataset", default="mnist5k", help="data set (default: mnist5k)")
    sweep.add_argument("--model", default=None, help="model (default: the data set's default)")
    sweep.add_argument("--forget", action="append", default=None, metavar="SPEC",
                       help="forget set (repeatable; default: class:3)")
    sweep.add_argument("--methods", default=None,
                       help="comma-separated methods (default: every registered one but retrain)")
    sweep.add_argument("--grid", action="append", default=None, metavar="METHOD.PARAM=V1,V2",
                       help="values of a method's declared parameter (repeatable); cells are their product")
    sweep.add_argument("--seeds", default="0", help="comma-separated seeds; each cell runs once per seed (default: 0)")
    sweep.add_argument("--retrains", default=None, metavar="K",
                       help="retrained models per forget set, the reference ensemble (default: one per seed)")
    add_deterministic(sweep)
    sweep.add_argument("--protocol", default="seeds", choices=("seeds", "competition"),
                       help="seeds (default): one original model per seed, the method run from each; competition: "
                            "the NeurIPS 2023 competition's protocol, every run from the first seed's original "
                            "model with the method's seed varied (the JSON names the protocol)")
    sweep.add_argument("--engine", default="ray", choices=("ray", "inline"),
                       help="ray (default): tasks on a local Ray instance or a cluster; inline: in this process")
    sweep.add_argument("--address", default=None,
                       help="join an existing Ray cluster: HOST:PORT, ray://HOST:PORT or auto (default: start "
                            "a local one on 127.0.0.1)")
    sweep.add_argument("--num-cpus", default=None, metavar="N",
                       help="CPUs of the local Ray instance (default: every core of this machine)")
    sweep.add_argument("--gpus-per-run", default="0", metavar="FRACTION",
                       help="GPU share each run asks Ray for, e.g. 0.25 (default: 0, runs on the CPU)")
    sweep.add_argument("--device", default="auto", help="inline engine only: auto, cpu, cuda[:N] or mps")
    sweep.add_argument("--search", default=None, choices=("optuna",),
                       help="search the methods' declared parameter ranges with Ray Tune + Optuna instead of a grid")
    sweep.add_argument("--trials", default=None, metavar="N", help="trials per method for --search (default: 20)")
    sweep.add_argument("--objective", default="avg_gap", choices=("avg_gap",),
                       help="what --search minimises (mean over forget sets and seeds)")
    sweep.add_argument("--tag", default=None, help="sweep name in the run store (default: derived from the request)")
    sweep.add_argument("--json", default=None, metavar="PATH", help="write every cell and every run as JSON")
    sweep.add_argument("--csv", default=None, metavar="PATH", help="write every cell and every run as CSV")
    sweep.add_argument("--out", default=None, metavar="PATH", help="also write the markdown tables here")
    sweep.add_argument("--store", default=None, metavar="PATH",
                       help="run store database (default: <data dir>/runs.sqlite)")
    sweep.add_argument("--retry-failed", action="store_true", help="run again the cells that failed before")
    sweep.add_argument("--no-checkpoints", action="store_true", help="do not keep the unlearned checkpoints")
    sweep.add_argument("--quiet", action="store_true", help="no per-run log lines on stderr")
    sweep.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    add_evidence_flags(sweep)


class SweepProgress:
    """One tqdm bar for a sweep (runs finished of runs to do, with done/running/failed and time left)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __call__(self, event) -> None:
        if not self.enabled or event.stage != "sweep":
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=event.steps, desc="sweep", file=sys.stderr, leave=False,
                            bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {postfix}")
        self.bar.n = event.step
        self.bar.set_postfix_str(event.message, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_sweep(args, _progress) -> int:
    from unlearn_core import sweeps
    from unlearn_core.outputs import require_writable_data_dir

    methods = args.methods
    if methods is None:
        from unlearn_core.methods import method_names

        methods = [m for m in method_names() if m != "retrain"]
    else:
        methods = sweeps.parse_methods(methods)
    spec = sweeps.SweepSpec(dataset=args.dataset, model=args.model, forgets=args.forget or ["class:3"],
                            methods=methods, grid=sweeps.parse_grid(args.grid, methods),
                            seeds=sweeps.parse_seeds(args.seeds),
                            retrains=whole_text(args.retrains, "--retrains", 0, 1000), tag=args.tag,
                            evidence=evidence_request(args), protocol=args.protocol)
    spec = sweeps.validate(spec)
    if args.search and spec.protocol != "seeds":
        raise CliError("--protocol competition applies to grid sweeps, not to --search")
    engine = sweeps.EngineConfig.checked(args.engine, args.address, whole_text(args.num_cpus, "--num-cpus", 1, 100_000),
                                         args.gpus_per_run, device=args.device)
    trials = whole_text(args.trials, "--trials", 1, 100_000)
    if args.search is None and trials is not None:
        raise CliError("--trials needs --search optuna")
    check_outputs({"--out": args.out, "--csv": args.csv, "--json": args.json}, args.store)
    require_writable_data_dir()
    store = store_for_recording(args.store)
    bar = SweepProgress(not args.no_progress and sys.stderr.isatty())
    log = (lambda _message: None) if args.quiet else None
    try:
        if args.search:
            result = sweeps.run_search(spec, trials or 20, args.objective, engine=engine.engine,
                                       address=engine.address, num_cpus=engine.num_cpus,
                                       gpus_per_run=engine.gpus_per_run, store=store, progress=bar, log=log)
        else:
            result = sweeps.run_sweep(spec, engine=engine.engine, address=engine.address, num_cpus=engine.num_cpus,
                                      gpus_per_run=engine.gpus_per_run, device=engine.device, store=store,
                                      progress=bar, log=log, save_checkpoints=not args.no_checkpoints,
                                      retry_failed=args.retry_failed)
    finally:
        bar.close()
    text = sweeps.markdown_tables(result)
    if result.get("search"):
        text += "\n" + sweeps.search_summary(result)
    out = human_stream(args.json, args.csv, args.out)
    print(text, file=out)
    print(f"sweep {result['tag']}: {result['ran']} runs now, {result['skipped']} already stored, "
          f"{result['seconds']:.0f}s (python -m unlearn_core runs list --tag {result['tag']})", file=out)
    if args.out:
        write_output(args.out, (text + "\n").encode(), "--out")
    if args.csv:
        write_output(args.csv, sweeps.csv_bytes(result), "--csv")
    if args.json:
        write_output(args.json, sweeps.json_bytes(result), "--json")
    return 0
