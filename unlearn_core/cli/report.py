"""The ``report`` command (one self-contained HTML report for runs) and ``prepare`` (a demo ready in advance)."""

from __future__ import annotations

import sys
from pathlib import Path

from unlearn_core.cli.common import (CliError, add_common, add_maps_flag, check_outputs, human_stream, installed_maps,
                                     parse_maps, whole_number, write_output)


def add_parsers(commands) -> None:
    report = commands.add_parser(
        "report", help="one self-contained HTML report of runs: metrics, figures and the recipe (opens offline)",
        description="One HTML file for a set of runs: the setting, the metrics (mean and 95 %% interval over "
                    "seeds), per-class shifts, the aligned embeddings, UNSC's spectrum, NatMU's hybrids, the "
                    "evidence and the recipe to reproduce them (commands, data and checkpoint SHA-256, package "
                    "versions, code commit). Plotly is inlined: the file opens offline.")
    report.set_defaults(handler=cmd_report)
    which = report.add_mutually_exclusive_group()
    which.add_argument("--runs", default=None, metavar="ID,ID", help="these runs (see `runs list`)")
    which.add_argument("--tag", default=None, help="every run with this tag")
    which.add_argument("--sweep", default=None, metavar="TAG", help="the runs of this sweep (its references too)")
    report.add_argument("--out", required=True, metavar="PATH",
                        help="the HTML file to write (e.g. report.html; - for standard output)")
    report.add_argument("--store", default=None, metavar="PATH",
                        help="run store database (default: <data dir>/runs.sqlite)")
    report.add_argument("--device", default="auto", help="where the figures' models run: auto, cpu, cuda[:N] or mps")
    report.add_argument("--points", type=whole_number(10, 100_000), default=1200,
                        help="training samples drawn in each embedding map (default: 1200)")
    report.add_argument("--reducer", default="pca", choices=("pca", "umap"),
                        help="embedding map: pca (instant, default) or umap (slower)")
    report.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")

    prepare = commands.add_parser(
        "prepare", help="cache the original and every single-class retrained reference (a demo, ready in advance)",
        description="Train (or find in the checkpoint cache) the original model and the retrained reference of "
                    "every single-class forget set (class:0 ... class:C-1), one after another; each is cached as "
                    "soon as it is trained, so a stopped run resumes, with each setting's before map and "
                    "retrained panel (--maps). A demo run on a prepared setting then waits only for its method.")
    add_common(prepare)
    prepare.add_argument("--status", action="store_true", help="only say how many references are cached")
    add_maps_flag(prepare, "every setting's before map and retrained panel")
    prepare.set_defaults(handler=cmd_prepare)


def cmd_report(args, progress) -> int:
    from unlearn_core.handout import build_handout, select_runs
    from unlearn_core.store import RunStore, default_store_path

    if not (args.runs or args.tag or args.sweep):
        raise CliError("report needs --runs ID,ID, --tag TAG or --sweep TAG")
    store_path = Path(args.store) if args.store else default_store_path()
    check_outputs({"--out": args.out}, store_path)  # before any work: a bad --out costs nothing
    store = RunStore(store_path)
    selection = select_runs(store, run_ids=args.runs, tag=args.tag, sweep=args.sweep)
    page = build_handout(store, selection, device=args.device, progress=progress, max_points=args.points,
                         reducer=args.reducer)
    if hasattr(progress, "close"):
        progress.close()
    write_output(args.out, page.encode("utf-8"), "--out")
    print(f"report of {selection.title} ({len(selection.done)} finished run(s)) written to {args.out} "
          f"({len(page.encode()) / 2**20:.1f} MiB, opens offline)", file=human_stream(args.out))
    return 0


def cmd_prepare(args, progress) -> int:
    from unlearn_core.demo import demo_status, prepare_demo
    from unlearn_core.outputs import require_writable_data_dir

    if args.status:
        print(demo_status(args.dataset, args.model, args.seed).line())
        return 0
    maps, note = installed_maps(parse_maps(args.maps))
    if note:
        print(note, file=sys.stderr)
    require_writable_data_dir()
    status = prepare_demo(args.dataset, args.model, args.seed, args.device, progress=progress, maps=maps)
    if hasattr(progress, "close"):
        progress.close()
    print(f"{status.dataset}/{status.model} seed {status.seed}: {status.line()}")
    return 0
