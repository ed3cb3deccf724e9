"""The ``train`` and ``unlearn`` commands."""

from __future__ import annotations

from unlearn_core.cli.common import (EVIDENCE_HELP_KINDS, CliError, TerminalProgress, add_common, add_maps_flag,
                                     check_outputs, human_stream, installed_maps, parse_maps, parse_param_pairs, store_for_recording,
                                     whole_number, write_json)
from unlearn_core.errors import UnlearnError


def add_parsers(commands) -> None:
    train = commands.add_parser("train", help="train (or load from the cache) the original model")
    add_common(train)
    train.add_argument("--epochs", type=whole_number(1), default=None, help="override the recipe's epochs")
    train.add_argument("--json", default=None, help="write the model's metadata and test accuracy here")
    train.set_defaults(handler=cmd_train)

    unlearn = commands.add_parser("unlearn", help="run one method and evaluate original, unlearned and retrained")
    add_common(unlearn)
    unlearn.add_argument("--forget", required=True,
                         help="forget set: class:3, class:1,3,5, random:0.1, subclass:NAME, indices:LIST|FILE")
    unlearn.add_argument("--method", required=True, help="method name; see `methods`")
    unlearn.add_argument("--param", action="append", metavar="KEY=VALUE",
                         help="method hyperparameter (repeatable); see `methods`")
    unlearn.add_argument("--json", default=None, help="write the full report here")
    unlearn.add_argument("--no-record", action="store_true",
                         help="do not record the run (and its checkpoint) in the run store")
    unlearn.add_argument("--evidence", default=None, metavar="KINDS",
                         help=f"deeper evidence of forgetting, comma-separated: {EVIDENCE_HELP_KINDS} (or all); "
                              "cka: linear CKA per layer against the original and the retrained model; "
                              "relearn_retain: forget accuracy back after fine-tuning on retained data only; "
                              "see docs/EVIDENCE.md")
    unlearn.add_argument("--evidence-param", action="append", metavar="KIND.KEY=VALUE",
                         help="an evidence parameter (repeatable), e.g. relearn.lr=0.05 or curves.every=5")
    add_maps_flag(unlearn, "a recorded run's map panels after its report (once per setting also the before map and "
                           "retrained panel)")
    unlearn.set_defaults(handler=cmd_unlearn)


def cmd_train(args, progress) -> int:
    from unlearn_core.data import load_dataset
    from unlearn_core.outputs import require_writable_data_dir
    from unlearn_core.training import accuracy, default_recipe, get_original

    if args.epochs is not None and args.epochs < 1:
        raise CliError("--epochs must be at least 1")
    check_outputs({"--json": args.json})
    require_writable_data_dir()
    bundle = load_dataset(args.dataset)
    recipe = default_recipe(bundle.name, **({"epochs": args.epochs} if args.epochs else {}))
    trained = get_original(bundle, args.model, args.seed, recipe, args.device, progress)
    test_acc = accuracy(trained.model, bundle.test_x, bundle.test_y)
    source = "loaded from cache" if trained.from_cache else f"trained in {trained.train_seconds:.1f}s"
    print(f"{bundle.name} / {trained.meta.get('model', args.model)}: test accuracy {test_acc:.2f}% ({source}; "
          f"checkpoint {trained.key})")
    if args.json:
        write_json(args.json, {"dataset": bundle.name, "model": trained.meta.get("model"), "seed": args.seed,
                                "test_accuracy": test_acc, "from_cache": trained.from_cache,
                                "train_seconds": trained.train_seconds, "checkpoint": trained.key})
    return 0


def cmd_unlearn(args, progress) -> int:
    from unlearn_core.methods import get_method
    from unlearn_core.pipeline import prepare, unlearn
    from unlearn_core.outputs import require_writable_data_dir
    from unlearn_core.record import run_and_record

    from unlearn_core.evidence import EvidenceRequest, format_evidence

    params = parse_param_pairs(args.param)
    maps = parse_maps(args.maps)
    check_outputs({"--json": args.json})
    require_writable_data_dir()
    evidence = EvidenceRequest.parse(args.evidence, parse_param_pairs(args.evidence_param))
    run_id, map_note = None, ""
    if args.no_record:
        report = unlearn(args.dataset, args.model, args.forget, args.method, params, args.seed, args.device,
                         progress, evidence=evidence)[0].to_dict()
    else:
        get_method(args.method).resolve_params(params)  # fail on bad parameters before any training
        store = store_for_recording(None)
        setup = prepare(args.dataset, args.model, args.forget, args.seed, args.device, progress=progress)
        run_id, report, method_run = run_and_record(setup, args.method, params, progress, store=store,
                                                    evidence=evidence)
        map_note = store_run_maps(setup, run_id, method_run.model, maps, progress)
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
        if map_note:
            print(map_note)
    if args.json:
        try:
            write_json(args.json, report)
        except UnlearnError as error:
            if run_id is None:
                raise
            # Checked before the run, yet the write failed (disk full): the report is safe in the store.
            raise CliError(f"{error} (the report is kept in the run store: python -m unlearn_core runs show "
                           f"{run_id} --json)") from None
        print(f"report written to {args.json}", file=human_stream(args.json))
    return 0


def store_run_maps(setup, run_id: int, model, maps: tuple[str, ...], progress) -> str:
    """The run's Embeddings panels (:func:`unlearn_core.embeddings.run_maps`), as the app's run job stores them, so
    the app opens this run's map as a lookup; returns a line for the terminal ("" for ``--maps none``).

    The run is already recorded: a map that fails is reported in that line (the page computes it when opened),
    not as the command's failure.
    """
    import time

    from unlearn_core.embeddings import EmbeddingCache, run_maps
    from unlearn_core.progress import ProgressEvent

    maps, note = installed_maps(maps)
    skipped = f" ({note})" if note else ""
    if not maps:
        return f"no map stored{skipped}" if skipped else ""
    names = ", ".join(m.upper() for m in maps)
    if progress is not None:
        progress(ProgressEvent(stage="map", message=f"the run's map ({names})"))
    started = time.perf_counter()
    try:
        run_maps(setup, f"run{run_id}", model, EmbeddingCache(), maps)
    except (UnlearnError, ImportError, MemoryError, RuntimeError, ValueError) as error:
        return f"map not stored ({names}): {error}; the Embeddings page computes it when opened"
    return (f"map stored ({names}, {time.perf_counter() - started:.1f} s): the Embeddings page opens it as a "
            f"lookup{skipped}")
