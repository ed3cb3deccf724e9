"""Command-line interface: ``python -m unlearn_core <command>``.

Bad arguments print one clear line and exit with code 2; a progress bar is
drawn on a terminal. Output paths are checked before any work starts, and
store, disk and file-system errors are one ``error:`` line too (issue 11).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import unicodedata
import warnings
from pathlib import Path

from unlearn_core.errors import Cancelled, UnlearnError, UnlearnWarning
from unlearn_core.parsing import ascii_int, is_ascii_int
from unlearn_core.progress import ProgressEvent
from unlearn_core.store import MAX_ROW_ID

EXIT_USAGE = 2


class CliError(Exception):
    """A usage error to print as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise CliError(message)


class TerminalProgress:
    """A tqdm bar per stage when stderr is a terminal; silent otherwise."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self.stage = None

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if event.stage != self.stage:
            self.close()
            self.stage = event.stage
            self.bar = tqdm(total=1000, desc=event.stage, file=sys.stderr, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        self.bar.n = int(event.fraction * 1000)
        postfix = f"epoch {event.epoch}/{event.epochs}" if event.epochs else ""
        if event.loss is not None:
            postfix += f" loss {event.loss:.4f}"
        if event.accuracy is not None:
            postfix += f" acc {event.accuracy:.1f}%"
        self.bar.set_postfix_str(postfix.strip(), refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def parse_param_pairs(pairs: list[str] | None) -> dict[str, str]:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--param expects KEY=VALUE, got {pair!r}")
        if _has_non_ascii_digit(value):
            # int() and float() read "epochs=٣" as 3: accept only what a reader of the command line sees as digits.
            raise CliError(f"--param {key.strip()!r}: write numbers with ASCII digits 0-9, got {value.strip()!r}")
        params[key.strip()] = value.strip()
    return params


def _has_non_ascii_digit(text: str) -> bool:
    return any(not ch.isascii() and unicodedata.numeric(ch, None) is not None for ch in text)


def _whole_number(low: int | None = None, high: int = MAX_ROW_ID):
    """An argparse type: ASCII digits only (``int()`` takes ``٣`` and ``1_000``), within [low, high]."""
    def parse(text: str) -> int:
        try:
            value = ascii_int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text[:40]!r} (whole numbers in digits 0-9)") \
                from None
        if (low is not None and value < low) or value > high:
            span = f"from {low} to {high}" if low is not None else f"up to {high}"
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is out of range: give a whole number {span}")
        return value
    return parse


def _store_for_recording(path):
    """The run store a command will record into, refused before the work if it is read-only or the
    checkpoint quota setting is bad (both would otherwise only fail when the first run is recorded)."""
    from unlearn_core.store import RunStore, run_checkpoint_quota_bytes

    store = RunStore(path)
    store.require_writable()
    run_checkpoint_quota_bytes()
    return store


def _check_outputs(named: dict[str, str | None], store_path=None) -> None:
    """Check every output path of a command before any work (one line naming the option on failure).

    Reused by every command that writes files (``sweep`` too): a run must never finish only to lose its
    report on an unwritable ``--json``.
    """
    from unlearn_core.outputs import check_output_paths

    check_output_paths(named, store_path)


def _write_output(path: str, data: bytes, option: str) -> None:
    from unlearn_core.outputs import write_output_bytes

    write_output_bytes(path, data, what=f"{option} output")


@contextlib.contextmanager
def _one_line_warnings():
    """Print the library's own warnings (a skipped run, a pruned checkpoint) as one ``warning:`` line each."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UnlearnWarning):
            print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UnlearnWarning)
        warnings.showwarning = show
        yield


def _add_common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--dataset", default="mnist5k", help="data set name (default: mnist5k); see `datasets`")
    sub.add_argument("--model", default=None, help="model name (default: the data set's default); see `models`")
    # 2**32 - 1 is forget.MAX_SEED, not imported here because forget pulls in torch for --help.
    sub.add_argument("--seed", type=_whole_number(0, 2**32 - 1), default=0,
                     help="seed for weights, splits and methods (default: 0)")
    sub.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda[:N] or mps")
    sub.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m unlearn_core",
                     description="Unlearning Lab: train, unlearn and evaluate image classifiers.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser("train", help="train (or load from the cache) the original model")
    _add_common(train)
    train.add_argument("--epochs", type=_whole_number(1), default=None, help="override the recipe's epochs")
    train.add_argument("--json", default=None, help="write the model's metadata and test accuracy here")

    unlearn = commands.add_parser("unlearn", help="run one method and evaluate original, unlearned and retrained")
    _add_common(unlearn)
    unlearn.add_argument("--forget", required=True,
                         help="forget set: class:3, class:1,3,5, random:0.1, subclass:NAME, indices:LIST|FILE")
    unlearn.add_argument("--method", required=True, help="method name; see `methods`")
    unlearn.add_argument("--param", action="append", metavar="KEY=VALUE",
                         help="method hyperparameter (repeatable); see `methods`")
    unlearn.add_argument("--json", default=None, help="write the full report here")
    unlearn.add_argument("--no-record", action="store_true",
                         help="do not record the run (and its checkpoint) in the run store")
    unlearn.add_argument("--evidence", default=None, metavar="KINDS",
                         help="deeper evidence of forgetting, comma-separated: probe, relearn, curves (or all); "
                              "see docs/EVIDENCE.md")
    unlearn.add_argument("--evidence-param", action="append", metavar="KIND.KEY=VALUE",
                         help="an evidence parameter (repeatable), e.g. relearn.lr=0.05 or curves.every=5")

    runs = commands.add_parser("runs", help="list, show, export and pin recorded runs (the run store)")
    runs.set_defaults(handler=_cmd_runs)
    runs_commands = runs.add_subparsers(dest="runs_command", metavar="ACTION", parser_class=_Parser)
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
        sub.add_argument("--limit", type=_whole_number(0), default=None, help="at most this many runs")
    runs_list.add_argument("--json", action="store_true", help="print as JSON")
    runs_export.add_argument("--csv", default=None, metavar="PATH", help="write a flat CSV here")
    runs_export.add_argument("--json", default=None, metavar="PATH", help="write full runs (with reports) here")
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

    bench = commands.add_parser("bench", help="compare every method with the retrained model over seeds")
    bench.set_defaults(handler=_cmd_bench)
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
    _add_evidence_flags(bench)
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
    bench.add_argument("--engine", default="inline", choices=("inline", "ray"),
                       help="inline (default: one run at a time, times comparable with docs/RESULTS.md) or ray "
                            "(a bench is a sweep; see `sweep`)")
    bench.add_argument("--address", default=None, help="with --engine ray: auto or ray://HOST:PORT")

    _add_sweep_parser(commands)

    methods = commands.add_parser("methods", help="list methods and their parameters")
    methods.add_argument("--json", action="store_true", help="print as JSON")
    commands.add_parser("datasets", help="list data sets")
    commands.add_parser("models", help="list models")
    return parser


def _cmd_methods(args) -> int:
    from unlearn_core.methods import get_method, method_names

    described = [get_method(name).describe() for name in method_names()]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for method in described:
        print(f"{method['name']:14s} {method['title']}: {method['summary']}")
        from unlearn_core.forget import KINDS

        if set(method["forget_kinds"]) != set(KINDS):  # say it only where a method is not for every forget set
            print(f"    designed for: {', '.join(method['forget_kinds'])} forgetting (other forget sets run, "
                  "marked out of scope)")
        for p in method["params"]:
            bounds = ""
            if "choices" in p:
                bounds = f" one of {', '.join(p['choices'])}"
            elif "low" in p:
                bounds = f" in [{p['low']:g}, {p['high']:g}]"
            print(f"    --param {p['name']}=<{p['type']}> (default {p['default']}{bounds}): {p['help']}")
    return 0


def _cmd_datasets(_) -> int:
    from unlearn_core.data import DATASETS, IMAGEFOLDER_PREFIX

    for info in DATASETS.values():
        where = "embedded" if info.embedded else "download"
        print(f"{info.name:14s} [{where}] default model {info.default_model}: {info.description}")
    print(f"{IMAGEFOLDER_PREFIX + '<path>':14s} [local] your class-per-folder images (inside UNLEARN_IMAGE_ROOT)")
    return 0


def _cmd_models(_) -> int:
    from unlearn_core.models import MODELS

    for info in MODELS.values():
        print(f"{info.name:10s} {info.description}")
    return 0


def _write_json(path: str, payload: dict, option: str = "--json") -> None:
    _write_output(path, (json.dumps(payload, indent=2) + "\n").encode(), option)


def _cmd_train(args, progress) -> int:
    from unlearn_core.data import load_dataset
    from unlearn_core.outputs import require_writable_data_dir
    from unlearn_core.training import accuracy, default_recipe, get_original

    if args.epochs is not None and args.epochs < 1:
        raise CliError("--epochs must be at least 1")
    _check_outputs({"--json": args.json})
    require_writable_data_dir()
    bundle = load_dataset(args.dataset)
    recipe = default_recipe(bundle.name, **({"epochs": args.epochs} if args.epochs else {}))
    trained = get_original(bundle, args.model, args.seed, recipe, args.device, progress)
    test_acc = accuracy(trained.model, bundle.test_x, bundle.test_y)
    source = "loaded from cache" if trained.from_cache else f"trained in {trained.train_seconds:.1f}s"
    print(f"{bundle.name} / {trained.meta.get('model', args.model)}: test accuracy {test_acc:.2f}% ({source}; "
          f"checkpoint {trained.key})")
    if args.json:
        _write_json(args.json, {"dataset": bundle.name, "model": trained.meta.get("model"), "seed": args.seed,
                                "test_accuracy": test_acc, "from_cache": trained.from_cache,
                                "train_seconds": trained.train_seconds, "checkpoint": trained.key})
    return 0


def _cmd_unlearn(args, progress) -> int:
    from unlearn_core.methods import get_method
    from unlearn_core.pipeline import prepare, unlearn
    from unlearn_core.outputs import require_writable_data_dir
    from unlearn_core.record import run_and_record

    from unlearn_core.evidence import EvidenceRequest, format_evidence

    params = parse_param_pairs(args.param)
    _check_outputs({"--json": args.json})
    require_writable_data_dir()
    evidence = EvidenceRequest.parse(args.evidence, parse_param_pairs(args.evidence_param))
    run_id = None
    if args.no_record:
        report, _, _ = unlearn(args.dataset, args.model, args.forget, args.method, params, args.seed, args.device,
                               progress, evidence=evidence)
    else:
        get_method(args.method).resolve_params(params)  # fail on bad parameters before any training
        store = _store_for_recording(None)
        setup = prepare(args.dataset, args.model, args.forget, args.seed, args.device, progress=progress)
        run_id, report, _ = run_and_record(setup, args.method, params, progress, store=store, evidence=evidence)
    if isinstance(progress, TerminalProgress):
        progress.close()
    u, r, o = report["unlearned"], report.get("retrained", {}), report["original"]

    def fmt(value):
        return "  n/a" if value is None else f"{value:6.2f}"

    print(f"{report['method']} on {report['dataset']}/{report['model']} forget {report['forget']} "
          f"({report['n_forget']} samples), seed {report['seed']}")
    print(f"{'':10s} {'FA':>6s} {'RA':>6s} {'TA':>6s} {'Acc_f':>6s} {'Acc_r':>6s} {'MIAsvc':>6s} {'MIAent':>6s}")
    for name, row in (("original", o), ("unlearned", u), ("retrained", r)):
        if row:
            print(f"{name:10s} " + " ".join(fmt(row.get(k)) for k in
                                             ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy")))
    speedup = fmt(report.get("rte")).strip() if report.get("rte_comparable", True) else "n/c"
    print(f"seconds {report['seconds']:.2f}  retrain {fmt(report.get('retrain_seconds')).strip()}s  "
          f"speed-up vs retrain {speedup}x  Avg.Gap {fmt(report.get('avg_gap')).strip()}")
    if report.get("rte_comparable") is False:
        print(f"speed-up not comparable: {report.get('rte_not_comparable_reason')}")
    if report.get("in_scope") is False:
        print(f"OUT OF SCOPE: {report.get('in_scope_reason')}")
    for line in format_evidence(report.get("evidence") or {}):
        print(line)
    if run_id is not None:
        print(f"recorded as run {run_id} (python -m unlearn_core runs show {run_id})")
    if args.json:
        try:
            _write_json(args.json, report)
        except UnlearnError as error:
            if run_id is None:
                raise
            # Checked before the run, yet the write failed (disk full): the report is safe in the store.
            raise CliError(f"{error} (the report is kept in the run store: python -m unlearn_core runs show "
                           f"{run_id} --json)") from None
        print(f"report written to {args.json}")
    return 0


def _fmt_number(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    try:
        return f"{value:.{digits}f}"
    except (TypeError, ValueError):  # a hand-edited row: show it, do not fail the listing
        return "?"


def _text(value, width: int | None = None) -> str:
    """A stored value for a table cell: one line, no control characters, cut to ``width``."""
    text = " ".join(str("" if value is None else value).split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if width is None else text[:width]


def _cmd_runs(args, _progress) -> int:
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
        _check_outputs({"--csv": args.csv, "--json": args.json}, store_path)
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
        print(f"run {run['id']} [{_text(run['status'])}] {_text(run['method'])} on {_text(run['dataset'])}/"
              f"{_text(run['model'])} forget {_text(run['forget'])} seed {_text(run['seed'])} "
              f"device {_text(run['device'])}")
        print(f"  params   {json.dumps(run['params'], sort_keys=True)}")
        print(f"  code     {_text(run['code_version'])}  started {_text(run['started_at'])}  "
              f"finished {_text(run['finished_at']) or '-'}")
        if run["error"]:
            print(f"  error    {_text(run['error'])}")
        if run["checkpoint_path"]:
            print(f"  checkpoint {run['checkpoint_path']}" + ("  (pinned)" if run.get("pinned") else ""))
        elif run.get("checkpoint_pruned_at"):
            print(f"  checkpoint pruned {_text(run['checkpoint_pruned_at'])} (run checkpoint quota; pin runs to "
                  "keep theirs)")
        report = run["report"] or {}
        keys = ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy")
        if report:
            print(f"  {'':10s} " + " ".join(f"{k:>11s}" for k in keys))
            for which in ("original", "unlearned", "retrained"):
                if isinstance(report.get(which), dict):
                    print(f"  {which:10s} " + " ".join(f"{_fmt_number(report[which].get(k)):>11s}" for k in keys))
            print(f"  seconds {_fmt_number(run['seconds'])}  retrain {_fmt_number(run['retrain_seconds'])}s  "
                  f"RTE {_fmt_number(run['rte'])}  Avg.Gap {_fmt_number(run['avg_gap'])}")
            unlearned = report.get("unlearned")
            per_class = unlearned.get("per_class_test") if isinstance(unlearned, dict) else None
            if isinstance(per_class, list) and per_class:
                print("  per-class test accuracy: " + " ".join(_fmt_number(v, 1) for v in per_class))
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
            print(f"{len(runs)} runs written to {path}")
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
        print(f"{run['id']:>5d} {_text(run['status'], 9):9s} {_text(run['method'], 13):13s} "
              f"{_text(run['dataset'], 9):9s} {_text(run['model'], 10):10s} {_text(run['forget'], 12):12s} "
              f"{_text(run['seed'], 12):>4s} "
              f"{_fmt_number(run['FA']):>6s} {_fmt_number(run['RA']):>6s} {_fmt_number(run['TA']):>6s} "
              f"{_fmt_number(run['MIA_entropy']):>6s} {_fmt_number(run['avg_gap']):>6s} "
              f"{_fmt_number(run['seconds']):>7s}  {_text(run['started_at'], 19)}")
    return 0


def _cmd_bench(args, _progress) -> int:
    from unlearn_core.bench import PRESETS, markdown_report, parse_seeds, run_bench
    from unlearn_core.outputs import require_writable_data_dir
    from unlearn_core.store import RunStore, default_store_path

    _check_outputs({"--out": args.out, "--csv": args.csv, "--json": args.json},
                   Path(args.store) if args.store else default_store_path())
    if args.from_tag:
        from unlearn_core.bench import result_from_store

        result = result_from_store(RunStore(args.store), args.from_tag)
        text = markdown_report(result, f"python -m unlearn_core bench --from-tag {args.from_tag}")
        print(text)
        _write_bench_files(args, result, text)
        return 0
    recipe_overrides, dataset, model = None, args.dataset, args.model
    if args.preset is not None:
        if args.preset not in PRESETS:
            raise CliError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[args.preset]
        dataset, model, recipe_overrides = dataset or preset.dataset, model or preset.model, preset.recipe
    dataset = dataset or "mnist5k"
    bad_seeds = [part.strip() for part in str(args.seeds).split(",") if part.strip() and not is_ascii_int(part)]
    if bad_seeds:  # parse_seeds uses int(), which reads "٣" as 3
        raise CliError(f"--seeds must be whole numbers in digits 0-9 separated by commas, got {bad_seeds[0][:40]!r}")
    seeds = parse_seeds(args.seeds)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    if args.methods is not None and not methods:
        raise CliError("--methods lists no method")
    forgets = args.forget or ["class:3", "random:0.1"]
    log = (lambda _message: None) if args.quiet else None
    if args.address and args.engine != "ray":
        raise CliError("--address needs --engine ray")
    params = parse_param_pairs(args.param)
    require_writable_data_dir()
    store = _store_for_recording(args.store)
    result = run_bench(dataset, forgets, seeds, methods, model, args.device, recipe_overrides, params, store,
                       tag=args.tag, log=log, threads=args.threads, engine=args.engine, address=args.address,
                       evidence=_evidence_request(args))
    text = markdown_report(result, _bench_command(args, dataset, model, forgets))
    print(text)
    print(f"total {result['total_seconds']:.0f}s ({result['ran']} runs now, {result['skipped']} already stored); "
          f"runs recorded with tag {result['tag']} (python -m unlearn_core bench --from-tag {result['tag']})")
    _write_bench_files(args, result, text)
    return 0


def _write_bench_files(args, result: dict, text: str) -> None:
    from unlearn_core.bench import write_csv, write_json
    from unlearn_core.errors import OutputPathError
    from unlearn_core.outputs import describe_os_error

    if args.out:
        _write_text(args.out, text, "--out")
    for option, path, write in (("--csv", args.csv, write_csv), ("--json", args.json, write_json)):
        if path:
            try:
                write(result, path)
            except OSError as error:  # checked before the bench; this is the disk filling up meanwhile
                raise OutputPathError(f"cannot write the {option} output to {str(path)!r}: "
                                      f"{describe_os_error(error)} (the runs are recorded under tag "
                                      f"{result.get('tag')}; rebuild with --from-tag)") from None


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


def _write_text(path: str, text: str, option: str = "--out") -> None:
    _write_output(path, (text + "\n").encode(), option)


# -- sweep ---------------------------------------------------------------------------------------------------------
SWEEP_EXAMPLE = """example:
  python -m unlearn_core sweep --dataset digits --model mlp \\
      --forget class:1 --forget random:0.1 --methods unsc,natmu,ga,rl \\
      --grid ga.lr=1e-3,2e-3,4e-3 --grid ga.epochs=3,5 --seeds 0,1,2 --retrains 3 \\
      --tag my-sweep --json sweep.json --csv sweep.csv

Running the same command again trains nothing new (runs are keyed by everything that determines them).
--address auto or ray://HOST:PORT joins an existing Ray cluster (docs/SWEEPS.md)."""


def _add_sweep_parser(commands) -> None:
    sweep = commands.add_parser("sweep", help="many runs: methods x parameter grids x forget sets x seeds, on Ray",
                                description="Run every (forget set, method, grid point) once per seed, with a "
                                            "reference ensemble of retrained models, on Ray (default) or inline.",
                                epilog=SWEEP_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.set_defaults(handler=_cmd_sweep)
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
    sweep.add_argument("--engine", default="ray", choices=("ray", "inline"),
                       help="ray (default): tasks on a local Ray instance or a cluster; inline: in this process")
    sweep.add_argument("--address", default=None,
                       help="join an existing Ray cluster: auto, or ray://HOST:PORT (default: start a local one)")
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
    _add_evidence_flags(sweep)


def _whole(text: str | None, flag: str, low: int, high: int) -> int | None:
    """An ASCII whole number in [low, high] (``int()`` would also take '٣' or '1_0')."""
    if text is None:
        return None
    text = str(text).strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise CliError(f"{flag} must be a whole number from {low} to {high}, got {text!r}")
    return int(text)


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


def _add_evidence_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--evidence", default=None, metavar="KINDS",
                     help="evidence of forgetting for every method run: probe, relearn, curves (or all); "
                          "see docs/EVIDENCE.md")
    sub.add_argument("--evidence-param", action="append", metavar="KIND.KEY=VALUE",
                     help="an evidence parameter (repeatable), e.g. relearn.lr=0.05")


def _evidence_request(args) -> dict | None:
    """``--evidence`` and ``--evidence-param`` as the plain dict a sweep carries (checked before any work)."""
    from unlearn_core.evidence import EvidenceRequest

    request = EvidenceRequest.parse(args.evidence, parse_param_pairs(args.evidence_param))
    return None if request is None else request.as_dict()


def _cmd_sweep(args, _progress) -> int:
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
                            retrains=_whole(args.retrains, "--retrains", 0, 1000), tag=args.tag,
                            evidence=_evidence_request(args))
    spec = sweeps.validate(spec)
    num_cpus = _whole(args.num_cpus, "--num-cpus", 1, 100_000)
    try:
        gpus = float(args.gpus_per_run)
    except ValueError:
        raise CliError(f"--gpus-per-run must be a number, got {args.gpus_per_run!r}") from None
    if args.engine != "ray" and (args.address or gpus):
        raise CliError("--address and --gpus-per-run need --engine ray")
    trials = _whole(args.trials, "--trials", 1, 100_000)
    if args.search is None and trials is not None:
        raise CliError("--trials needs --search optuna")
    _check_outputs({"--out": args.out, "--csv": args.csv, "--json": args.json}, args.store)
    require_writable_data_dir()
    store = _store_for_recording(args.store)
    bar = SweepProgress(not args.no_progress and sys.stderr.isatty())
    log = (lambda _message: None) if args.quiet else None
    try:
        if args.search:
            result = sweeps.run_search(spec, trials or 20, args.objective, engine=args.engine, address=args.address,
                                       num_cpus=num_cpus, gpus_per_run=gpus, store=store, progress=bar, log=log)
        else:
            result = sweeps.run_sweep(spec, engine=args.engine, address=args.address, num_cpus=num_cpus,
                                      gpus_per_run=gpus, device=args.device, store=store, progress=bar, log=log,
                                      save_checkpoints=not args.no_checkpoints, retry_failed=args.retry_failed)
    finally:
        bar.close()
    text = sweeps.markdown_tables(result)
    if result.get("search"):
        text += "\n" + sweeps.search_summary(result)
    print(text)
    print(f"sweep {result['tag']}: {result['ran']} runs now, {result['skipped']} already stored, "
          f"{result['seconds']:.0f}s (python -m unlearn_core runs list --tag {result['tag']})")
    if args.out:
        _write_output(args.out, (text + "\n").encode(), "--out")
    if args.csv:
        _write_output(args.csv, sweeps.csv_bytes(result), "--csv")
    if args.json:
        _write_output(args.json, sweeps.json_bytes(result), "--json")
    return 0


def main(argv: list[str] | None = None) -> int:
    with _one_line_warnings():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    progress = None
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "methods":
            return _cmd_methods(args)
        if args.command == "datasets":
            return _cmd_datasets(args)
        if args.command == "models":
            return _cmd_models(args)
        progress = TerminalProgress(False if getattr(args, "no_progress", False) else None)
        if args.command == "train":
            return _cmd_train(args, progress)
        if args.command == "unlearn":
            return _cmd_unlearn(args, progress)
        handler = getattr(args, "handler", None)
        if handler is not None:
            return handler(args, progress)
        raise CliError(f"unknown command {args.command!r}")
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Cancelled as error:
        print(f"cancelled: {error}", file=sys.stderr)
        return 130
    except UnlearnError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `runs list | head`: the reader left; that is not an error to report (and stdout cannot take one).
        # Point stdout at /dev/null so the flush at exit does not raise again (the recipe of Python's docs).
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        # Disk full, a quota, a file system gone read-only mid-run: one line, not a 19-line traceback.
        from unlearn_core.outputs import describe_os_error

        where = f" ({error.filename!r})" if getattr(error, "filename", None) else ""
        print(f"error: {describe_os_error(error)}{where}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as error:
        print(f"error: run store: {' '.join(str(error).split())[:200]}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if isinstance(progress, TerminalProgress):
            progress.close()
