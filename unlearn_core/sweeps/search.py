"""Hyperparameter search: each method's declared ranges searched by Optuna's TPE sampler through Ray Tune.

Every trial's runs are recorded as cells of the sweep (through the same
:class:`~unlearn_core.sweeps.driver.SweepDriver` a grid uses), so
:func:`~unlearn_core.sweeps.aggregate.sweep_result` works as for a grid.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Callable

from unlearn_core.progress import ProgressFn
from unlearn_core.sweeps.aggregate import sweep_result
from unlearn_core.sweeps.driver import SweepDriver, SweepEvent
from unlearn_core.sweeps.engines import first_line
from unlearn_core.sweeps.plan import Cell, PlannedRun, plan, run_key
from unlearn_core.sweeps.spec import OBJECTIVES, EngineConfig, SweepError, SweepSpec, stable_hash, validate
from unlearn_core.sweeps.work import execute_run


def search_space(method: str, fixed: dict[str, list] | None = None) -> dict:
    """Ray Tune's space for a method: every declared parameter with a range or choices.

    Floats draw uniformly (log-uniformly when the ``Param`` says ``log``), ints
    likewise over [low, high], strings and booleans from their choices.
    Parameters in ``fixed`` (from ``--grid``) keep their one value, or choose
    among their values; a number without both bounds keeps its default.
    """
    from ray import tune

    from unlearn_core.methods import get_method

    fixed = fixed or {}
    space = {}
    for param in get_method(method).params:
        if param.name in fixed:
            values = list(fixed[param.name])
            space[param.name] = values[0] if len(values) == 1 else tune.choice(values)
        elif param.type is bool:
            space[param.name] = tune.choice([True, False])
        elif param.choices is not None:
            space[param.name] = tune.choice(list(param.choices))
        elif param.type in (int, float) and param.low is not None and param.high is not None:
            log_scale = param.log and param.low > 0
            if param.type is float:
                space[param.name] = (tune.loguniform if log_scale else tune.uniform)(param.low, param.high)
            else:  # Tune's integer upper bounds are exclusive
                space[param.name] = (tune.lograndint if log_scale else tune.randint)(int(param.low),
                                                                                     int(param.high) + 1)
    return space


def _trial(config: dict, method: str = "", runs: list | None = None, models: dict | None = None,
           device: str = "cpu", threads: int | None = 1, objective: str = "avg_gap") -> None:
    """One Tune trial: the method with ``config`` on every forget set and seed; reports the mean objective."""
    import ray
    from ray import tune

    outs = []
    for run in runs or []:
        original = ray.get(models[("original", None, run["seed"])])
        retrained = ray.get(models[("retrain", run["forget"], run["seed"])])
        out = execute_run({**run, "method": method, "params": dict(config)}, original, retrained, device, threads,
                          save_state=False)
        outs.append({k: v for k, v in out.items() if k != "state"})
    values = [o["report"].get(objective) for o in outs if o.get("report")]
    values = [v for v in values if v is not None and math.isfinite(v)]
    # A failed run counts as the worst possible gap (100 points), so the searcher steers away from it.
    score = (sum(values) + 100.0 * (len(outs) - len(values))) / max(len(outs), 1)
    tune.report({objective: score, "failed": len(outs) - len(values), "outs": json.dumps(outs, default=str)})


def run_search(spec: SweepSpec, trials: int, objective: str = "avg_gap", engine: str = "ray",
               address: str | None = None, num_cpus: int | None = None, gpus_per_run: float = 0.0, store=None,
               progress: ProgressFn | None = None, log: Callable[[str], None] | None = None, seed: int = 0) -> dict:
    """Search each method's declared ranges with Ray Tune and Optuna; every trial's runs are recorded.

    Per method, ``trials`` parameter sets are drawn by Optuna's TPE sampler;
    each is run on every forget set and seed and scored by the mean
    ``objective``. The reference ensemble runs first (keyed and resumable like
    any sweep). Trials are recorded by the driver as cells of the sweep, so
    the table shows every trial and :func:`sweep_result` works as for a grid.
    """
    config = EngineConfig.checked(engine, address, num_cpus, gpus_per_run)
    if config.engine != "ray":
        raise SweepError("--search runs on Ray Tune: use --engine ray")
    if objective not in OBJECTIVES:
        raise SweepError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SweepError(f"--trials must be at least 1, got {trials!r}")
    methods = [m for m in validate(spec).methods if m != "retrain"]
    if not methods:
        raise SweepError("--search needs a method other than retrain")
    # Tune's old console reporter stays silent at verbose=0; the new one prints a summary box to stdout.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401  (fail here, before any work)
        import optuna  # noqa: F401
    except ImportError as error:
        raise SweepError(f"--search optuna needs ray[tune] and optuna (pip install -r requirements.txt): "
                         f"{first_line(error)}") from None

    def search_tag(validated: SweepSpec) -> str:
        return f"search-{stable_hash({**validated.as_dict(), 'trials': trials, 'objective': objective})[:10]}"

    driver = SweepDriver.open(spec, config, store, "search", search_tag, progress=progress, log=log,
                              extra={"search": {"searcher": "optuna", "trials": trials, "objective": objective}})
    spec = driver.spec
    references = [p for p in plan(SweepSpec(spec.dataset, spec.model, spec.forgets, [], {}, spec.seeds,
                                            spec.retrains), driver.recipe, driver.device_name)
                  if p.role == "reference"]
    pending = driver.link_held(references)
    total_trials = trials * len(methods)
    counts = driver.counts

    def emit(running: int, seconds_left: float | None) -> None:
        if progress is not None:
            finished = counts["done"] + counts["failed"]
            progress(SweepEvent(stage="sweep", step=finished, steps=len(pending) + total_trials,
                                message=f"{counts['done']} done, {running} running, {counts['failed']} failed",
                                done=counts["done"], failed=counts["failed"], running=running))

    driver.emit = emit
    summary = {}
    try:
        driver.start_engine()
        if pending:
            driver.drive(pending)
        for forget in spec.forgets:
            for s in spec.seeds:
                driver.model_ref("original", None, s)
                driver.model_ref("retrain", forget, s)
        blobs = {key: refs[0] for key, refs in driver.model_refs.items()}
        for method in methods:
            summary[method] = _search_method(driver, method, trials, objective, blobs, seed)
    finally:
        driver.close()
    result = sweep_result(driver.store, driver.tag)
    result.update({"engine": config.engine, "ran": len(pending) + counts.get("recorded", 0),
                   "skipped": driver.skipped, "seconds": time.perf_counter() - driver.started, "search": summary})
    return result


def _search_method(driver: SweepDriver, method: str, trials: int, objective: str, blobs: dict, seed: int) -> dict:
    """One Tune study for ``method``: ``trials`` parameter sets on every forget set and seed, each recorded."""
    import logging

    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from unlearn_core import paths

    from unlearn_core.methods import get_method

    logging.getLogger("optuna").setLevel(logging.WARNING)  # one line per study and trial otherwise
    engine, spec, recipe, device_name = driver.engine, driver.spec, driver.recipe, driver.device_name
    tag, store, counts, emit, log = driver.tag, driver.store, driver.counts, driver.emit, driver.log
    gpus_per_run = driver.config.gpus_per_run

    space = search_space(method, spec.grid.get(method))
    runs = [{"key": "", "dataset": spec.dataset, "model": spec.model, "forget": forget, "seed": s, "recipe": recipe}
            for forget in spec.forgets for s in spec.seeds]

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            emit(sum(1 for t in trials if t.status == "RUNNING"), None)

    trainable = tune.with_resources(
        tune.with_parameters(_trial, method=method, runs=runs, models=blobs, device=device_name, threads=1,
                             objective=objective),
        {"cpu": 1, "gpu": gpus_per_run})
    searcher = OptunaSearch(metric=objective, mode="min", seed=seed)
    tuner = tune.Tuner(trainable, param_space=space,
                       tune_config=tune.TuneConfig(search_alg=searcher, num_samples=trials,
                                                   max_concurrent_trials=engine.slots),
                       run_config=tune.RunConfig(name=f"{tag}-{method}", verbose=0,
                                                 storage_path=str(paths.data_dir() / "ray_results"),
                                                 callbacks=[Progress()]))
    grid = tuner.fit()
    best, recorded = None, 0
    for result in grid:
        if result.error is not None or not result.metrics or "outs" not in result.metrics:
            counts["failed"] += 1
            log(f"search {method}: a trial failed ({first_line(result.error) if result.error else 'no result'})")
            continue
        params = get_method(method).resolve_params({k: v for k, v in result.config.items()})
        cell = Cell(spec.dataset, spec.model, "", method, tuple(sorted(params.items())))
        for out in json.loads(result.metrics["outs"]):
            run = next(r for r in runs if r["forget"] == out["forget"] and r["seed"] == out["seed"])
            run_cell = Cell(cell.dataset, cell.model, run["forget"], method, cell.params)
            key = run_key(run_cell, run["seed"], recipe, device_name.split(":")[0])
            planned = PlannedRun(run_cell, run["seed"], "run", key)
            if key in store.find_keys([key]) and store.find_keys([key])[key]["status"] == "done":
                store.link_sweep_run(tag, key, store.find_keys([key])[key]["id"], "run")
                continue
            driver.record(planned, out, {}, "ray-tune", False)
            recorded += 1
            counts["recorded"] = counts.get("recorded", 0) + 1
        counts["done"] += 1
        value = result.metrics.get(objective)
        if best is None or value < best[0]:
            best = (value, params)
    log(f"search {method}: {len(grid)} trials, best {objective} "
        f"{'-' if best is None else f'{best[0]:.3f}'}")
    return {"trials": len(grid), "objective": objective, "best_value": None if best is None else best[0],
            "best_params": None if best is None else best[1],
            "space": sorted(k for k, v in space.items() if not isinstance(v, (int, float, str, bool)))}


def search_summary(result: dict) -> str:
    """The best parameters per searched method, one line each."""
    lines = ["Search results (lower is better):"]
    for method, info in (result.get("search") or {}).items():
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in sorted((info.get("best_params") or {}).items()))
        best = "-" if info.get("best_value") is None else f"{info['best_value']:.3f}"
        lines.append(f"- `{method}`: best {info['objective']} {best} over {info['trials']} trials "
                     f"(searched {', '.join(info['space']) or 'nothing'}): {params}")
    return "\n".join(lines) + "\n"
