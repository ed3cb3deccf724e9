"""The ``runs`` command: list, show, export, pin and unpin recorded runs."""

from __future__ import annotations

import json
from pathlib import Path

from unlearn_core.cli.common import human_stream, CliError, Parser, cell_text, check_outputs, fmt_number, whole_number


def add_parsers(commands) -> None:
    runs = commands.add_parser("runs", help="list, show, export and pin recorded runs (the run store)")
    runs.set_defaults(handler=cmd_runs)
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="ACTION", parser_class=Parser)
    runs_list = runs_commands.add_parser("list", help="recorded runs, newest first")
    runs_export = runs_commands.add_parser("export", help="write runs to CSV and/or JSON")
    for sub in (runs_list, runs_export):
        sub.add_argument("--dataset", default=None, help="only runs on this data set")
        sub.add_argument("--model", default=None, help="only runs of this model")
        sub.add_argument("--forget", default=None, help="only runs with this forget spec (e.g. class:3)")
        sub.add_argument("--method", default=None, help="only runs of this method")
        sub.add_argument("--status", default=None, choices=("running", "done", "failed", "cancelled"),
                         help="only runs with this status")
        sub.add_argument("--tag", default=None, help="only runs with this tag (bench runs are tagged)")
        sub.add_argument("--limit", type=whole_number(0), default=None, help="at most this many runs")
    runs_list.add_argument("--json", action="store_true", help="print as JSON")
    runs_export.add_argument("--csv", default=None, metavar="PATH", help="write a flat CSV here (- for standard output)")
    runs_export.add_argument("--json", default=None, metavar="PATH", help="write full runs (with reports) here (- for standard output)")
    runs_show = runs_commands.add_parser("show", help="one run in full")
    runs_show.add_argument("run_id", metavar="ID", help="run id (see `runs list`)")
    runs_show.add_argument("--json", action="store_true", help="print the whole stored run as JSON")
    runs_pin = runs_commands.add_parser("pin", help="keep a run's checkpoint: the checkpoint quota never prunes it")
    runs_unpin = runs_commands.add_parser("unpin", help="let the checkpoint quota prune a run's checkpoint again")
    for sub in (runs_pin, runs_unpin):
        sub.add_argument("run_id", metavar="ID", help="run id (see `runs list`)")
    for sub in (runs_list, runs_export, runs_show, runs_pin, runs_unpin):
        sub.add_argument("--store", default=None, metavar="PATH",
                         help="run store database (default: <data dir>/runs.sqlite)")


def cmd_runs(args, _progress) -> int:
    from unlearn_core.store import RunStore

    from unlearn_core.store import run_id_from_text

    if args.runs_command is None:
        raise CliError("runs needs an action: list, show ID, export --csv PATH / --json PATH, pin ID or unpin ID")
    if args.runs_command == "export":
        if args.csv is None and args.json is None:
            raise CliError("runs export needs --csv PATH and/or --json PATH")
        store_path = Path(args.store) if args.store else None
        if store_path is None:
            from unlearn_core.store import default_store_path

            store_path = default_store_path()
        check_outputs({"--csv": args.csv, "--json": args.json}, store_path)
    run_id = run_id_from_text(args.run_id) if args.runs_command in ("show", "pin", "unpin") else None
    store = RunStore(args.store)
    if args.runs_command in ("pin", "unpin"):
        run = store.pin(run_id, args.runs_command == "pin")
        if args.runs_command == "pin":
            kept = "its checkpoint is kept" if run.get("checkpoint_path") else \
                "it has no checkpoint to keep" + (" (pruned earlier)" if run.get("checkpoint_pruned_at") else "")
            print(f"run {run_id} pinned: {kept}")
        else:
            print(f"run {run_id} unpinned: the checkpoint quota may prune its checkpoint")
        return 0
    if args.runs_command == "show":
        run = store.get(run_id)
        if args.json:
            print(json.dumps(run, indent=2))
            return 0
        print(f"run {run['id']} [{cell_text(run['status'])}] {cell_text(run['method'])} on {cell_text(run['dataset'])}/"
              f"{cell_text(run['model'])} forget {cell_text(run['forget'])} seed {cell_text(run['seed'])} "
              f"device {cell_text(run['device'])}")
        print(f"  params   {json.dumps(run['params'], sort_keys=True)}")
        print(f"  code     {cell_text(run['code_version'])}  started {cell_text(run['started_at'])}  "
              f"finished {cell_text(run['finished_at']) or '-'}")
        if run["error"]:
            print(f"  error    {cell_text(run['error'])}")
        if run["checkpoint_path"]:
            print(f"  checkpoint {run['checkpoint_path']}" + ("  (pinned)" if run.get("pinned") else ""))
        elif run.get("checkpoint_pruned_at"):
            print(f"  checkpoint pruned {cell_text(run['checkpoint_pruned_at'])} (run checkpoint quota; pin runs to "
                  "keep theirs)")
        report = run["report"] or {}
        keys = ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy")
        if report:
            print(f"  {'':10s} " + " ".join(f"{k:>11s}" for k in keys))
            for which in ("original", "unlearned", "retrained"):
                if isinstance(report.get(which), dict):
                    print(f"  {which:10s} " + " ".join(f"{fmt_number(report[which].get(k)):>11s}" for k in keys))
            print(f"  seconds {fmt_number(run['seconds'])}  retrain {fmt_number(run['retrain_seconds'])}s  "
                  f"RTE {fmt_number(run['rte'])}  Avg.Gap {fmt_number(run['avg_gap'])}")
            unlearned = report.get("unlearned")
            per_class = unlearned.get("per_class_test") if isinstance(unlearned, dict) else None
            if isinstance(per_class, list) and per_class:
                print("  per-class test accuracy: " + " ".join(fmt_number(v, 1) for v in per_class))
            from unlearn_core.evidence import format_evidence

            for line in format_evidence(report.get("evidence") or {}):
                print(f"  {line}")
        return 0
    runs = store.list(dataset=args.dataset, model=args.model, forget=args.forget, method=args.method,
                      status=args.status, limit=args.limit, tag=args.tag)
    if args.runs_command == "export":
        from unlearn_core.errors import OutputPathError

        for option, path, write in (("--csv", args.csv, store.export_csv), ("--json", args.json, store.export_json)):
            if path is None:
                continue
            try:
                write(runs, path)
            except OutputPathError as error:  # the disk filled up after the check: say which option failed
                raise OutputPathError(f"{option}: {error}") from None
            print(f"{len(runs)} runs written to {path}", file=human_stream(args.csv, args.json))
        return 0
    if args.json:
        print(json.dumps([RunStore.flat_row(run) for run in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs recorded in {store.path}")
        return 0
    print(f"{'id':>5s} {'status':9s} {'method':13s} {'dataset':9s} {'model':10s} {'forget':12s} {'seed':>4s} "
          f"{'FA':>6s} {'RA':>6s} {'TA':>6s} {'MIAent':>6s} {'AvgGap':>6s} {'sec':>7s}  started")
    for run in runs:
        print(f"{run['id']:>5d} {cell_text(run['status'], 9):9s} {cell_text(run['method'], 13):13s} "
              f"{cell_text(run['dataset'], 9):9s} {cell_text(run['model'], 10):10s} {cell_text(run['forget'], 12):12s} "
              f"{cell_text(run['seed'], 12):>4s} "
              f"{fmt_number(run['FA']):>6s} {fmt_number(run['RA']):>6s} {fmt_number(run['TA']):>6s} "
              f"{fmt_number(run['MIA_entropy']):>6s} {fmt_number(run['avg_gap']):>6s} "
              f"{fmt_number(run['seconds']):>7s}  {cell_text(run['started_at'], 19)}")
    return 0
