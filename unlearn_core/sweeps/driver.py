"""The sweep driver: plans a sweep, skips what the store holds, submits the rest to an engine and records each
result as it arrives (the driver alone writes the store).

A :class:`SweepDriver` holds one call's context (spec, engine, store, tag,
recipe, device, counts, progress and log) from :meth:`SweepDriver.open`, the
setup :func:`run_sweep` and :func:`unlearn_core.sweeps.search.run_search`
share, to :meth:`SweepDriver.close`. Each result is recorded with
:func:`unlearn_core.record.record_outcome`, the same step a single run uses,
then linked to the sweep under its run key.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from unlearn_core.errors import Cancelled
from unlearn_core.progress import ProgressEvent, ProgressFn, format_seconds, seconds_left
from unlearn_core.sweeps.aggregate import sweep_result
from unlearn_core.sweeps.engines import InlineEngine, RayEngine, task_error
from unlearn_core.sweeps.plan import PlannedRun, plan
from unlearn_core.sweeps.spec import EngineConfig, SweepSpec, default_tag, validate
from unlearn_core.sweeps.work import StateHolder, execute_run, train_model


@dataclass
class SweepEvent(ProgressEvent):
    """Progress of a sweep: ``step`` runs finished of ``steps`` to run now (skipped ones are not counted)."""

    done: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0
    seconds_left: float | None = None


def _run_config(planned: PlannedRun, recipe: dict, device: str, tag: str, infos: dict, report: dict | None,
                engine: str, node: str | None = None) -> dict:
    """A sweep run's config, as a single run's; ``node_id`` is the Ray node the run finished on (``"local"``
    inline; None when the run never reached a worker, e.g. its model task failed)."""
    original = infos.get(("original", None, planned.start_seed)) or {}
    retrained = infos.get(("retrain", planned.cell.forget, planned.seed)) or {}
    return {"dataset": planned.cell.dataset, "model": planned.cell.model, "forget": planned.cell.forget,
            "method": planned.cell.method, "params": planned.cell.params_dict, "seed": planned.seed,
            "device": device, "tag": tag, "recipe": recipe, "original_checkpoint": original.get("key"),
            "retrained_checkpoint": retrained.get("key"),
            "n_forget": (report or {}).get("n_forget"), "sweep": tag, "sweep_key": planned.key,
            "sweep_role": planned.role, "sweep_cell": planned.cell.cell_id(), "engine": engine, "node_id": node}


def run_sweep(spec: SweepSpec, engine: str = "ray", address: str | None = None, num_cpus: int | None = None,
              gpus_per_run: float = 0.0, device: str | None = None, store=None, progress: ProgressFn | None = None,
              cancel: threading.Event | None = None, log: Callable[[str], None] | None = None,
              save_checkpoints: bool = True, retry_failed: bool = False, kind: str = "sweep",
              threads: int | None = None) -> dict:
    """Run (or resume) a sweep and return :func:`sweep_result` for it, plus what this call did.

    ``device`` applies to the inline engine (default: the best available); Ray
    runs on the CPU unless ``gpus_per_run`` > 0. ``threads`` is torch's thread
    count per task (default: 1 on Ray, unchanged inline). Runs already held
    under their key (done, or failed unless ``retry_failed``) are skipped and
    linked to this sweep.
    """
    config = EngineConfig.checked(engine, address, num_cpus, gpus_per_run, threads, device)
    driver = SweepDriver.open(spec, config, store, kind, default_tag, progress=progress, cancel=cancel, log=log,
                              save_checkpoints=save_checkpoints)
    planned = plan(driver.spec, driver.recipe, driver.device_kind)
    # The tag shows what this invocation asks for: runs of an earlier request under the same tag (other code, a
    # narrower grid) stay in the store but leave the sweep, so no cell counts a seed twice.
    driver.store.unlink_sweep_runs(driver.tag, {p.key for p in planned})
    pending = driver.link_held(planned, retry_failed)
    driver.started = time.perf_counter()  # the sweep's seconds and time left count from here

    def emit(running: int, seconds_left: float | None) -> None:
        if progress is None:
            return
        counts, skipped = driver.counts, driver.skipped
        finished = counts["done"] + counts["failed"]
        message = (f"{counts['done']} done, {running} running, {counts['failed']} failed"
                   + (f", {skipped} already stored" if skipped else "")
                   + (f", ~{format_seconds(seconds_left)} left" if finished < len(pending) else ""))
        progress(SweepEvent(stage="sweep", step=finished, steps=len(pending), message=message,
                            done=counts["done"], failed=counts["failed"], running=running, skipped=skipped,
                            seconds_left=seconds_left))

    driver.emit = emit
    emit(0, None)  # the first event already tells how many runs were stored before
    try:
        if pending:
            driver.start_engine()
            driver.drive(pending)
    finally:
        driver.close()
    result = sweep_result(driver.store, driver.tag)
    result.update({"engine": config.engine, "ran": len(pending), "skipped": driver.skipped,
                   "seconds": time.perf_counter() - driver.started})
    return result


def start_engine(config: EngineConfig, device_name: str, cancel: threading.Event | None = None):
    """The engine object for a checked configuration: a :class:`RayEngine` or an :class:`InlineEngine`."""
    if config.engine == "ray":
        return RayEngine(config.address, config.num_cpus, config.gpus_per_run)
    return InlineEngine(device_name, None, cancel)


@dataclass
class SweepDriver:
    """One sweep call's context: what runs, where, into which store and tag, and what has happened so far."""

    spec: SweepSpec  # validated
    config: EngineConfig
    store: Any
    tag: str
    recipe: dict
    device_name: str
    log: Callable[[str], None]
    progress: ProgressFn | None = None
    cancel: threading.Event | None = None
    save_checkpoints: bool = True
    threads: int | None = None
    counts: dict = field(default_factory=lambda: {"done": 0, "failed": 0})
    skipped: int = 0
    started: float = field(default_factory=time.perf_counter)
    #: (kind, forget, seed) -> the (blob, info) refs of a model task, submitted once per engine.
    model_refs: dict = field(default_factory=dict)
    engine: Any = None
    emit: Callable[[int, float | None], None] = lambda running, seconds_left: None

    @classmethod
    def open(cls, spec: SweepSpec, config: EngineConfig, store, kind: str, tag_for: Callable[[SweepSpec], str],
             progress: ProgressFn | None = None, cancel: threading.Event | None = None,
             log: Callable[[str], None] | None = None, save_checkpoints: bool = True,
             extra: dict | None = None) -> "SweepDriver":
        """The setup every sweep shares: validate the spec, load the data set (failing early on an unknown or
        unreachable one), its training recipe, the device, the tag (``spec.tag`` or ``tag_for(spec)``), the
        store, and the sweep's row (its spec, recipe, device kind and ``extra``)."""
        from unlearn_core.data import load_dataset
        from unlearn_core.forget import ForgetSpec
        from unlearn_core.store import RunStore
        from unlearn_core.training import default_recipe

        spec = validate(spec)
        if config.engine == "ray" and config.address:
            from unlearn_core.raycluster import check_address

            check_address(config.address)  # before any work: nothing is recorded for a cluster out of reach
        log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        bundle = load_dataset(spec.dataset)  # fails early on an unknown or unreachable data set
        for forget in spec.forgets:  # an unknown class or an unreadable index file fails here, before any row
            ForgetSpec.parse(forget).resolve(bundle, spec.seeds[0])
        recipe = default_recipe(bundle.name, **(spec.recipe_overrides or {})).as_dict()
        device_name = config.device_name
        driver = cls(spec, config, store or RunStore(), spec.tag or tag_for(spec), recipe, device_name, log,
                     progress, cancel, save_checkpoints, config.task_threads)
        driver.store.save_sweep(driver.tag, kind, {**spec.as_dict(), "recipe": recipe, "device": driver.device_kind,
                                                   **(extra or {})})
        driver.started = time.perf_counter()
        return driver

    @property
    def device_kind(self) -> str:
        return self.device_name.split(":")[0]

    def link_held(self, planned: list[PlannedRun], retry_failed: bool = False) -> list[PlannedRun]:
        """Link the runs the store already holds under their keys (done, or failed unless ``retry_failed``) to
        this sweep; returns the rest, to run."""
        held = self.store.find_keys([p.key for p in planned])
        pending = []
        for p in planned:
            found = held.get(p.key)
            if found is not None and (found["status"] == "done" or not retry_failed):
                self.store.link_sweep_run(self.tag, p.key, found["id"], p.role)
                self.skipped += 1
            else:
                pending.append(p)
        return pending

    def start_engine(self) -> None:
        if self.engine is None:
            self.engine = start_engine(self.config, self.device_name, self.cancel)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    def model_ref(self, kind: str, forget: str | None, seed: int):
        """The (blob, info) refs of a model task, submitted once per engine: every run that needs it shares it."""
        key = (kind, forget if kind != "original" else None, seed)
        if key not in self.model_refs:
            self.model_refs[key] = self.engine.submit(
                train_model, (kind, self.spec.dataset, self.spec.model, forget or "", seed, self.recipe,
                              self.device_name, self.threads), num_returns=2, kind="model")
        return self.model_refs[key]

    def drive(self, pending: list[PlannedRun]) -> None:
        """Submit model tasks and runs, then record each result as it arrives (the driver alone writes the store)."""
        engine, spec, counts = self.engine, self.spec, self.counts
        already = set(self.model_refs)
        run_refs = {}
        for p in pending:
            original_blob, _ = self.model_ref("original", None, p.start_seed)
            retrained_blob, _ = self.model_ref("retrain", p.cell.forget, p.seed)
            run = {"key": p.key, "dataset": p.cell.dataset, "model": p.cell.model, "forget": p.cell.forget,
                   "method": p.cell.method, "params": p.cell.params_dict, "seed": p.seed, "recipe": self.recipe,
                   "evidence": spec.evidence if p.role == "run" and p.cell.method != "retrain" else None,
                   "original_seed": p.start_seed, "verdict_outputs": spec.keeps_verdict_outputs()}
            ref = engine.submit(execute_run, (run, original_blob, retrained_blob, self.device_name, self.threads,
                                              self.save_checkpoints))
            run_refs[ref] = p
        infos: dict = {}
        info_refs = {info: key for key, (_, info) in self.model_refs.items() if key not in already}
        waiting = list(info_refs)  # model infos first: they are small and the run configs name the checkpoints
        outstanding = list(run_refs)
        recorded = set()
        first_result_at = None
        try:
            while waiting or outstanding:
                if self.cancel is not None and self.cancel.is_set():
                    raise Cancelled("sweep cancelled")
                queue = waiting if waiting else outstanding
                ready, _ = engine.wait(queue, timeout=0.5)
                models_left = len(waiting)
                running = min(len(outstanding), max(0, engine.slots - models_left))
                finished = counts["done"] + counts["failed"]
                left = (seconds_left(time.perf_counter() - self.started, finished, len(pending))
                        if first_result_at is not None else None)
                for ref in ready:
                    if ref in info_refs:
                        waiting.remove(ref)
                        try:
                            infos[info_refs[ref]] = engine.get(ref)
                        except Cancelled:
                            raise
                        except Exception as error:  # the runs that need this model fail with it, one by one
                            self.log(f"training {info_refs[ref][0]} model (seed {info_refs[ref][2]}) failed: "
                                     f"{task_error(error)}")
                        continue
                    outstanding.remove(ref)
                    planned = run_refs.pop(ref)
                    try:
                        out = engine.get(ref)
                    except Cancelled:
                        raise
                    except Exception as error:
                        out = {"report": None, "state": None, "error": task_error(error)}
                    if planned.key in recorded:
                        continue  # never twice, whatever an engine hands back
                    recorded.add(planned.key)
                    first_result_at = first_result_at or time.perf_counter()
                    self.record(planned, out, infos, engine.name, self.save_checkpoints)
                    counts["failed" if out.get("error") else "done"] += 1
                    _log_run(self.log, planned, out, counts, len(pending), self.started)
                self.emit(running if outstanding else 0, left)
        except BaseException:
            engine.cancel(list(run_refs) + waiting)
            raise

    def record(self, planned: PlannedRun, out: dict, infos: dict, engine_name: str, save_checkpoints: bool) -> None:
        """Record one result as a normal run (:func:`unlearn_core.record.record_outcome`), then link it."""
        from unlearn_core.record import record_outcome

        config = _run_config(planned, self.recipe, self.device_name, self.tag, infos, out.get("report"), engine_name,
                             out.get("node_id"))
        state = out.get("state")
        run_id = record_outcome(self.store, config, out.get("report"), None if state is None else StateHolder(state),
                                error=out.get("error"), save_checkpoint=save_checkpoints)
        self.store.link_sweep_run(self.tag, planned.key, run_id, planned.role)


def _log_run(log, planned: PlannedRun, out: dict, counts: dict, total: int, started: float) -> None:
    finished = counts["done"] + counts["failed"]
    params = ",".join(f"{k}={v}" for k, v in planned.cell.params) if planned.role == "run" else ""
    where = f"{planned.cell.forget} seed {planned.seed} {planned.cell.method}" + (f" [{params}]" if params else "")
    if out.get("error"):
        log(f"[{finished}/{total}] {where}: FAILED ({out['error']})")
        return
    report = out["report"]
    u = report["unlearned"]
    log(f"[{finished}/{total}] {where}: FA {u['FA']:.1f} RA {u['RA']:.1f} TA {u['TA']:.1f} "
        f"gap {report.get('avg_gap') or 0:.2f} ({report['seconds']:.1f}s, "
        f"{time.perf_counter() - started:.0f}s elapsed)")
