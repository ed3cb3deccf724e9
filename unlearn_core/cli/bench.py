"""The ``bench`` command: every method against the retrained model over seeds (a preset on the sweeps)."""

from __future__ import annotations

from pathlib import Path

from unlearn_core.cli.common import (human_stream, add_deterministic, CliError, add_evidence_flags, check_outputs, evidence_request, parse_param_pairs,
                                     store_for_recording, write_text)


def add_parsers(commands) -> None:
    bench = commands.add_parser("bench", help="compare every method with the retrained model over seeds")
    bench.set_defaults(handler=cmd_bench)
    bench.add_argument("--dataset", default=None, help="data set (default: mnist5k, or the preset's)")
    bench.add_argument("--model", default=None, help="model (default: the data set's default, or the preset's)")
    bench.add_argument("--preset", default=None, help="paper-like setting: cifar10-resnet18 (GPU, downloads CIFAR-10)")
    bench.add_argument("--forget", action="append", default=None, metavar="SPEC",
                       help="forget setting (repeatable; default: class:3 and random:0.1)")
    bench.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    bench.add_argument("--methods", default=None, help="comma-separated methods (default: every registered one)")
    bench.add_argument("--param", action="append", metavar="METHOD.KEY=VALUE",
                       help="a method's hyperparameter (repeatable), e.g. ga.lr=1e-3")
    bench.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda[:N] or mps")
    add_evidence_flags(bench)
    bench.add_argument("--out", default=None, metavar="PATH", help="also write the markdown tables here")
    bench.add_argument("--csv", default=None, metavar="PATH", help="write mean/std per method and setting as CSV")
    bench.add_argument("--json", default=None, metavar="PATH", help="write every per-seed value as JSON")
    bench.add_argument("--store", default=None, metavar="PATH",
                       help="run store database (default: <data dir>/runs.sqlite)")
    bench.add_argument("--quiet", action="store_true", help="no per-run log lines on stderr")
    bench.add_argument("--threads", type=int, default=None, metavar="N",
                       help="pin torch to N threads for every timing (default: torch's count at the start)")
    bench.add_argument("--from-tag", default=None, metavar="TAG",
                       help="run nothing: rebuild the tables from the runs recorded under TAG")
    bench.add_argument("--tag", default=None, help="the bench's name in the run store (default: bench-<time>); "
                                                   "the same tag again resumes it")
    add_deterministic(bench)
    bench.add_argument("--engine", default="inline", choices=("inline", "ray"),
                       help="inline (default: one run at a time, times comparable with docs/RESULTS.md) or ray "
                            "(a bench is a sweep; see `sweep`)")
    bench.add_argument("--address", default=None, help="with --engine ray: HOST:PORT, ray://HOST:PORT or auto")


def cmd_bench(args, _progress) -> int:
    from unlearn_core.bench import PRESETS, markdown_report, run_bench
    from unlearn_core.sweeps import parse_seeds
    from unlearn_core.outputs import require_writable_data_dir
    from unlearn_core.store import RunStore, default_store_path

    check_outputs({"--out": args.out, "--csv": args.csv, "--json": args.json},
                   Path(args.store) if args.store else default_store_path())
    if args.from_tag:
        from unlearn_core.bench import result_from_store

        result = result_from_store(RunStore(args.store), args.from_tag)
        text = markdown_report(result, f"python -m unlearn_core bench --from-tag {args.from_tag}")
        print(text, file=human_stream(args.json, args.csv, args.out))
        _write_bench_files(args, result, text)
        return 0
    recipe_overrides, dataset, model = None, args.dataset, args.model
    if args.preset is not None:
        if args.preset not in PRESETS:
            raise CliError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[args.preset]
        dataset, model, recipe_overrides = dataset or preset.dataset, model or preset.model, preset.recipe
    dataset = dataset or "mnist5k"
    seeds = parse_seeds(args.seeds)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    if args.methods is not None and not methods:
        raise CliError("--methods lists no method")
    forgets = args.forget or ["class:3", "random:0.1"]
    log = (lambda _message: None) if args.quiet else None
    from unlearn_core.sweeps import EngineConfig

    EngineConfig.checked(args.engine, args.address, threads=args.threads)
    params = parse_param_pairs(args.param)
    require_writable_data_dir()
    store = store_for_recording(args.store)
    result = run_bench(dataset, forgets, seeds, methods, model, args.device, recipe_overrides, params, store,
                       tag=args.tag, log=log, threads=args.threads, engine=args.engine, address=args.address,
                       evidence=evidence_request(args))
    text = markdown_report(result, _bench_command(args, dataset, model, forgets))
    out = human_stream(args.json, args.csv, args.out)
    print(text, file=out)
    print(f"total {result['total_seconds']:.0f}s ({result['ran']} runs now, {result['skipped']} already stored); "
          f"runs recorded with tag {result['tag']} (python -m unlearn_core bench --from-tag {result['tag']})", file=out)
    _write_bench_files(args, result, text)
    return 0


def _write_bench_files(args, result: dict, text: str) -> None:
    from unlearn_core.bench import flat_rows
    from unlearn_core.errors import OutputPathError
    from unlearn_core.outputs import write_output_bytes
    from unlearn_core.sweeps import json_bytes, rows_csv_bytes

    if args.out:
        write_text(args.out, text, "--out")
    for option, path, data in (("--csv", args.csv, lambda: rows_csv_bytes(flat_rows(result), ("dataset",))),
                               ("--json", args.json, lambda: json_bytes(result))):
        if path:
            try:
                write_output_bytes(path, data(), f"{option} output")
            except OutputPathError as error:  # checked before the bench; this is the disk filling up meanwhile
                raise OutputPathError(f"{error} (the runs are recorded under tag {result.get('tag')}; rebuild "
                                      "with --from-tag)") from None


def _bench_command(args, dataset: str, model: str | None, forgets: list[str]) -> str:
    """The canonical command line that reproduces a bench (printed above its tables)."""
    import shlex

    parts = ["python -m unlearn_core bench"]
    if args.preset:
        parts.append(f"--preset {args.preset}")
    parts.append(f"--dataset {dataset}")
    if model:
        parts.append(f"--model {model}")
    parts += [f"--forget {shlex.quote(f)}" for f in forgets]
    parts.append(f"--seeds {args.seeds}")
    if args.methods:
        parts.append(f"--methods {args.methods}")
    parts += [f"--param {shlex.quote(p)}" for p in args.param or []]
    if args.device != "auto":
        parts.append(f"--device {args.device}")
    if args.threads:
        parts.append(f"--threads {args.threads}")
    if args.evidence:
        parts.append(f"--evidence {shlex.quote(args.evidence)}")
    parts += [f"--evidence-param {shlex.quote(p)}" for p in args.evidence_param or []]
    return " ".join(parts)
