"""Sweeps: many runs (methods x parameter grids x forget sets x seeds) on Ray, or in this process.

A *cell* is (data set, model, forget set, method, parameter values); a sweep
runs each cell once per seed and, per forget set, a *reference ensemble* of
``retrains`` retrained models (method ``retrain``, one per seed). Every run is
an ordinary recorded run of the run store (the same report as ``unlearn``),
tagged with the sweep and linked to it under a *run key*: a hash of everything
that determines the run (data set, model, forget set, method, resolved
parameters, seed, training recipe, device kind, code version). Running a sweep
again skips every key it already holds, so a killed driver loses only the runs
that were in flight and a second identical sweep trains nothing.

Engines:

- ``ray`` (default): original and retrained models are Ray tasks, trained (or
  loaded from the node's checkpoint cache) once and handed to the runs through
  the object store, since cluster nodes share no disk. Each run is a task
  asking for one CPU (and ``gpus_per_run`` of a GPU) with torch on one thread.
  Ray retries a task whose worker died; the result reaches the driver once,
  and only the driver writes the run store, so no run is recorded twice.
  ``address=None`` starts an embedded local instance sized to the machine
  (temp files under the data directory, or the system temp when that path is
  too long for Ray's sockets) and shuts it down at the end; ``"auto"`` or
  ``"ray://HOST:PORT"`` joins an existing cluster and ships this package to it.
- ``inline``: the same functions, called one after another in this process
  (debugging, tests of the core). For the same seeds it gives the same numbers.

``ray`` is imported only when a ray sweep starts. Progress goes to a
:data:`~unlearn_core.progress.ProgressFn` as :class:`SweepEvent`; a
``threading.Event`` cancels. :func:`sweep_result` rebuilds a sweep's cells and
aggregates (mean, standard deviation and 95 % interval over seeds, the gap to
the reference ensemble's mean and whether the mean lies inside its spread)
from the store alone, so the app can browse any sweep.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from unlearn_core.errors import Cancelled, ParameterError, UnlearnError
from unlearn_core.progress import ProgressEvent, ProgressFn

KEY_VERSION = 1
ENGINES = ("ray", "inline")
#: The model's own metrics (a report's ``unlearned`` section), compared with the reference ensemble; any other
#: number a report's ``unlearned`` section gains is aggregated and compared too, after these.
MODEL_METRICS = ("Acc_f", "Acc_r", "FA", "RA", "TA", "TA_retain", "MIA_svc", "MIA_entropy")
#: Numbers about the run rather than the model: aggregated, not compared with the ensemble.
RUN_ONLY_METRICS = ("avg_gap", "seconds", "rte", "js_forget", "js_test")
RUN_METRICS = MODEL_METRICS + RUN_ONLY_METRICS
#: What a report says about a run beyond its numbers (the bench marks rows with these).
REPORT_FLAGS = ("in_scope", "in_scope_reason", "rte_comparable", "rte_not_comparable_reason")
OBJECTIVES = ("avg_gap",)
SEARCHERS = ("optuna",)
#: Ray's socket paths must stay under 107 bytes; its session folder adds about 70 characters to the temp dir.
MAX_RAY_TEMP_DIR = 36


class SweepError(UnlearnError):
    """A sweep request is invalid or its engine cannot start."""


@dataclass
class SweepEvent(ProgressEvent):
    """Progress of a sweep: ``step`` runs finished of ``steps`` to run now (skipped ones are not counted)."""

    done: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0
    seconds_left: float | None = None


# -- the request ---------------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """What to run. ``grid`` maps a method to ``{param: [values]}``; ``retrains`` sizes the reference ensemble."""

    dataset: str = "digits"
    model: str | None = None
    forgets: list[str] = field(default_factory=lambda: ["class:3"])
    methods: list[str] = field(default_factory=list)
    grid: dict[str, dict[str, list]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    retrains: int | None = None
    recipe_overrides: dict | None = None
    tag: str | None = None
    #: Evidence of forgetting for every method run (docs/EVIDENCE.md): ``"probe,relearn"``, a list, an
    #: ``EvidenceRequest`` or its ``as_dict()``; :func:`validate` turns it into the dict.
    evidence: Any = None

    def as_dict(self) -> dict:
        out = {"dataset": self.dataset, "model": self.model, "forgets": list(self.forgets),
               "methods": list(self.methods), "grid": {m: dict(g) for m, g in self.grid.items()},
               "seeds": list(self.seeds), "retrains": self.reference_count(),
               "recipe_overrides": self.recipe_overrides or None}
        if self.evidence:  # only when asked for, so the tags of sweeps without evidence stay as they were
            out["evidence"] = self.evidence
        return out

    def collects_confidences(self) -> bool:
        """Whether runs keep their forget-set confidences for the retrain-distinguisher score.

        It needs several unlearned models per cell and several retrained ones
        (docs/EVIDENCE.md: at least 8 each to mean something).
        """
        return self.reference_count() >= 2 and len(self.seeds) >= 2

    def reference_count(self) -> int:
        """``retrains``, or one retrained model per seed when unset (those are trained for the reports anyway)."""
        return len(self.seeds) if self.retrains is None else int(self.retrains)


@dataclass(frozen=True)
class Cell:
    """One point of the sweep: a method with fixed parameter values on one forget set."""

    dataset: str
    model: str
    forget: str
    method: str
    params: tuple  # sorted (name, value) pairs of the resolved parameters

    @property
    def params_dict(self) -> dict:
        return dict(self.params)

    def cell_id(self) -> str:
        return _hash({"dataset": self.dataset, "model": self.model, "forget": self.forget, "method": self.method,
                      "params": self.params_dict})[:12]


@dataclass(frozen=True)
class PlannedRun:
    """A cell at one seed; ``role`` is ``run`` or ``reference`` (a retrained model of the ensemble)."""

    cell: Cell
    seed: int
    role: str
    key: str


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (ASCII digits only, no repeats)."""
    from unlearn_core.forget import validate_seed

    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not parts:
        raise ParameterError(f"{flag} lists no seed")
    seeds = []
    for part in parts:
        if not (part.isascii() and part.isdigit()):
            raise ParameterError(f"{flag} must be whole numbers separated by commas, got {text!r}")
        seeds.append(validate_seed(int(part)))
    if len(set(seeds)) != len(seeds):
        raise ParameterError(f"{flag} repeats a seed: {text}")
    return seeds


def parse_methods(text: str | list[str] | None) -> list[str]:
    """Registered method names from ``"unsc,natmu"`` (or a list), in the order given, without repeats."""
    from unlearn_core.methods import get_method

    items = text.split(",") if isinstance(text, str) else list(text or [])
    names = [get_method(item.strip()).name for item in items if str(item).strip()]
    if not names:
        raise ParameterError("--methods lists no method")
    if len(set(names)) != len(names):
        raise ParameterError(f"--methods repeats a method: {','.join(names)}")
    return names


def parse_grid(items: list[str] | None, methods: list[str]) -> dict[str, dict[str, list]]:
    """``["ga.lr=1e-3,2e-3", "ga.epochs=3,5"]`` -> ``{"ga": {"lr": [0.001, 0.002], "epochs": [3, 5]}}``.

    Every name must be a declared :class:`~unlearn_core.methods.Param` of a
    method the sweep runs, and every value must pass its type and range.
    """
    from unlearn_core.methods import get_method

    grid: dict[str, dict[str, list]] = {}
    for item in items or []:
        left, sep, right = str(item).partition("=")
        method, dot, name = left.strip().partition(".")
        if not sep or not dot or not method or not name.strip():
            raise ParameterError(f"--grid takes METHOD.PARAM=V1,V2,..., got {item!r}")
        method_cls = get_method(method)
        if method_cls.name not in methods:
            raise ParameterError(f"--grid {left.strip()}: {method_cls.name!r} is not in --methods")
        try:
            param = method_cls.param(name.strip())
        except ParameterError as error:
            raise ParameterError(f"--grid {left.strip()}: {error}") from None
        raw = [v.strip() for v in right.split(",")]
        if not right.strip() or any(not v for v in raw):
            raise ParameterError(f"--grid {left.strip()} needs comma-separated values, got {right!r}")
        try:
            values = [param.coerce(v) for v in raw]
        except ParameterError as error:
            raise ParameterError(f"--grid {left.strip()}: {error}") from None
        if len(set(values)) != len(values):
            raise ParameterError(f"--grid {left.strip()} repeats a value: {right}")
        if param.name in grid.get(method_cls.name, {}):
            raise ParameterError(f"--grid {left.strip()} is given twice")
        grid.setdefault(method_cls.name, {})[param.name] = values
    return grid


def validate(spec: SweepSpec) -> SweepSpec:
    """Check everything that can be checked without training; returns a normalised copy.

    Unknown data sets, models, methods, parameters, values out of their
    declared range and malformed forget sets all fail here, before anything runs.
    """
    from unlearn_core.data import default_model_for
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.methods import get_method
    from unlearn_core.models import MODELS
    from unlearn_core.training import TrainRecipe

    methods = parse_methods(spec.methods)
    grid = {}
    for method, params in (spec.grid or {}).items():
        name = get_method(method).name
        if name not in methods:
            raise ParameterError(f"grid parameters for {name!r}, which the sweep does not run")
        grid[name] = {get_method(name).param(p).name: [get_method(name).param(p).coerce(v) for v in values]
                      for p, values in params.items()}
        for p, values in grid[name].items():
            if not values:
                raise ParameterError(f"grid {name}.{p} lists no value")
    model = spec.model or default_model_for(spec.dataset)
    if model not in MODELS:
        raise ParameterError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    forgets = [str(ForgetSpec.parse(f)) for f in spec.forgets]
    if not forgets:
        raise ParameterError("a sweep needs at least one --forget")
    if len(set(forgets)) != len(forgets):
        raise ParameterError(f"--forget repeats a forget set: {', '.join(forgets)}")
    seeds = parse_seeds(",".join(str(s) for s in spec.seeds))
    retrains = spec.reference_count()
    if isinstance(retrains, bool) or not 0 <= retrains <= 1000:
        raise ParameterError(f"--retrains must be between 0 and 1000, got {spec.retrains}")
    overrides = dict(spec.recipe_overrides or {})
    unknown = set(overrides) - set(TrainRecipe.__dataclass_fields__)
    if unknown:
        raise ParameterError(f"unknown recipe fields: {', '.join(sorted(unknown))}")
    return SweepSpec(spec.dataset, model, forgets, methods, grid, seeds, retrains, overrides or None, spec.tag,
                     evidence_dict(spec.evidence))


def evidence_dict(evidence) -> dict | None:
    """Any accepted form of an evidence request as the plain dict a task and the store carry (None: none)."""
    from unlearn_core.evidence import EvidenceRequest

    if isinstance(evidence, dict):
        overrides = {f"{kind}.{name}": value for kind, params in (evidence.get("params") or {}).items()
                     for name, value in params.items()}
        request = EvidenceRequest.parse(evidence.get("kinds") or [], overrides)
    else:
        request = EvidenceRequest.parse(evidence)
    return None if request is None else request.as_dict()


def default_tag(spec: SweepSpec) -> str:
    """A tag derived from the spec, so the same command resumes the same sweep."""
    return f"sweep-{_hash(spec.as_dict())[:10]}"


def cells(spec: SweepSpec) -> list[Cell]:
    """Every (forget set, method, grid point) of a validated spec, in the order given."""
    from unlearn_core.methods import get_method

    out = []
    for forget in spec.forgets:
        for method in spec.methods:
            grid = spec.grid.get(method, {})
            names = sorted(grid)
            for values in itertools.product(*(grid[n] for n in names)):
                resolved = get_method(method).resolve_params(dict(zip(names, values)))
                out.append(Cell(spec.dataset, spec.model, forget, method, tuple(sorted(resolved.items()))))
    return out


def reference_seeds(seeds: list[int], count: int) -> list[int]:
    """The ensemble's seeds: the sweep's seeds first (their retrained models exist anyway), then new ones."""
    chosen = list(seeds)[:count]
    extra = max(seeds) + 1 if seeds else 0
    while len(chosen) < count:
        if extra not in chosen:
            chosen.append(extra)
        extra += 1
    return chosen


def run_key(cell: Cell, seed: int, recipe: dict, device_kind: str, evidence: dict | None = None) -> str:
    """Everything that determines a run's result (the code version too: new code, new runs).

    ``evidence`` enters the key only when asked for: a run with evidence holds more than one without.
    """
    from unlearn_core.store import code_version

    payload = {"v": KEY_VERSION, "dataset": cell.dataset, "model": cell.model, "forget": cell.forget,
               "method": cell.method, "params": cell.params_dict, "seed": int(seed), "recipe": recipe,
               "device": device_kind, "code": code_version()}
    if evidence:
        payload["evidence"] = evidence
    return _hash(payload)


def plan(spec: SweepSpec, recipe: dict, device_kind: str) -> list[PlannedRun]:
    """References first (per forget set), then every cell at every seed; a run asked for twice appears once."""
    runs, seen = [], set()
    for forget in spec.forgets:
        reference = Cell(spec.dataset, spec.model, forget, "retrain", ())
        for seed in reference_seeds(spec.seeds, spec.reference_count()):
            key = run_key(reference, seed, recipe, device_kind)
            seen.add(key)
            runs.append(PlannedRun(reference, seed, "reference", key))
    for cell in cells(spec):
        for seed in spec.seeds:
            key = run_key(cell, seed, recipe, device_kind, spec.evidence if cell.method != "retrain" else None)
            if key not in seen:
                seen.add(key)
                runs.append(PlannedRun(cell, seed, "run", key))
    return runs


# -- work done in a task (a Ray worker, or this process for the inline engine) -------------------------------------
def _one_thread(threads: int | None) -> None:
    # Several runs share a machine; one torch thread each makes them not fight over cores.
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def train_model(kind: str, dataset: str, model: str, forget: str, seed: int, recipe: dict, device: str,
                threads: int | None = None):
    """Train (or load from this node's cache) the original or a retrained model.

    Returns ``(blob, info)``: ``blob`` carries the weights to the runs through
    the object store, ``info`` is the small part the driver reads.
    """
    from unlearn_core.data import load_dataset
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.training import TrainRecipe, get_original, get_retrained

    _one_thread(threads)
    bundle = load_dataset(dataset)
    recipe_obj = TrainRecipe(**recipe)
    if kind == "original":
        trained = get_original(bundle, model, seed, recipe_obj, device)
    else:
        from unlearn_core.device import timing_conditions

        split = ForgetSpec.parse(forget).resolve(bundle, seed)
        # Timed under this task's conditions (device, threads), so each run's speed-up divides like for like.
        trained = get_retrained(bundle, split, model, seed, recipe_obj, device,
                                retime_for=timing_conditions(device))
    state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
    info = {"kind": kind, "forget": forget, "seed": seed, "key": trained.key, "from_cache": trained.from_cache,
            "train_seconds": trained.train_seconds, "pid": os.getpid()}
    return {"key": trained.key, "meta": trained.meta, "state": state}, info


def _trained_from_blob(blob: dict, bundle, model_name: str, seed: int, device):
    from unlearn_core.checkpoints import load_state_strict
    from unlearn_core.models import build_for_dataset
    from unlearn_core.training import TrainedModel

    model = build_for_dataset(model_name, bundle, seed=seed)
    load_state_strict(model, blob["state"])
    model.to(device).eval()
    return TrainedModel(model, blob["key"], dict(blob["meta"]), True, 0.0)


def _ensure_cached(trained) -> None:
    """Put a model that came through the object store into this node's checkpoint cache.

    The ``retrain`` method reads its model from the cache; on a cluster node that
    never trained it, it would otherwise train it again.
    """
    from unlearn_core.checkpoints import CheckpointCache

    cache = CheckpointCache()
    if not cache.path_for(trained.key).exists():
        with cache.lock(trained.key):
            if not cache.path_for(trained.key).exists():
                cache.save(trained.key, trained.model, trained.meta)


def execute_run(run: dict, original: dict, retrained: dict, device: str, threads: int | None = None,
                save_state: bool = True, progress: ProgressFn | None = None,
                cancel: threading.Event | None = None) -> dict:
    """One method run on models handed in as blobs; returns the report (and weights) or the error.

    A method's own failure (divergence, bad request) comes back as ``error`` so
    the sweep records it and goes on; Ray retries only a worker that died.
    ``run["evidence"]`` adds the report's evidence section; ``run["confidences"]``
    keeps the model's logit-scaled confidence on every forget sample
    (``forget_confidences``, with the forget set's ``forget_split_key``) for
    the retrain-distinguisher score of :func:`sweep_result`.
    """
    import torch

    from unlearn_core.data import load_dataset
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.pipeline import Setup, build_report, run_method
    from unlearn_core.jsonsafe import error_text
    from unlearn_core.training import TrainRecipe

    _one_thread(threads)
    started = time.perf_counter()
    out = {"key": run["key"], "forget": run["forget"], "seed": run["seed"], "pid": os.getpid(), "report": None,
           "state": None, "error": None}
    try:
        device = torch.device(device)
        bundle = load_dataset(run["dataset"])
        split = ForgetSpec.parse(run["forget"]).resolve(bundle, run["seed"])
        original_model = _trained_from_blob(original, bundle, run["model"], run["seed"], device)
        retrained_model = _trained_from_blob(retrained, bundle, run["model"], run["seed"], device)
        if run["method"] == "retrain":
            _ensure_cached(retrained_model)
        setup = Setup(bundle, split, run["model"], run["seed"], device, TrainRecipe(**run["recipe"]),
                      original_model, retrained_model)
        evidence = None
        if run.get("evidence"):
            from unlearn_core.evidence import EvidenceRequest

            evidence = EvidenceRequest(tuple(run["evidence"]["kinds"]), run["evidence"]["params"])
        result = run_method(setup, run["method"], run["params"], progress, cancel, evidence=evidence)
        out["report"] = build_report(setup, result, evidence=evidence)
        if run.get("confidences"):
            from unlearn_core.evidence import forget_confidences

            values = forget_confidences(result.model, bundle, split, device)
            # Five decimals of a logit are far below any threshold's resolution, and keep the stored report small.
            out["report"]["forget_confidences"] = [round(float(v), 5) for v in values]
            out["report"]["forget_split_key"] = split.key()
        if save_state:
            out["state"] = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    except Cancelled:
        raise
    except Exception as error:  # the sweep records the failure and goes on
        out["error"] = error_text(error)
    out["wall_seconds"] = time.perf_counter() - started
    return out


# -- engines -------------------------------------------------------------------------------------------------------
class _Thunk:
    """A call the inline engine runs when someone waits for it (arguments that are thunks run first)."""

    def __init__(self, fn, args, kwargs, parts: int):
        self.fn, self.args, self.kwargs, self.parts = fn, args, kwargs, parts
        self.done, self.value, self.error = False, None, None

    def run(self):
        if not self.done:
            try:
                args = [a.get() if isinstance(a, _Ref) else a for a in self.args]
                self.value = self.fn(*args, **self.kwargs)
            except Cancelled:
                raise
            except Exception as error:
                self.error = error
            self.done = True
            self.fn = self.args = None  # free the inputs once used
        if self.error is not None:
            raise self.error
        return self.value


class _Ref:
    def __init__(self, thunk: _Thunk, index: int | None):
        self.thunk, self.index = thunk, index

    def get(self):
        value = self.thunk.run()
        return value if self.index is None else value[self.index]


class InlineEngine:
    """Runs every task in this process, in submission order, when it is waited for."""

    name = "inline"

    def __init__(self, device: str, progress: ProgressFn | None = None, cancel: threading.Event | None = None):
        self.device, self.progress, self.cancel_event = device, progress, cancel
        self.slots = 1

    def submit(self, fn, args, num_returns: int = 1, kind: str = "run"):
        kwargs = {"progress": self.progress, "cancel": self.cancel_event} if fn is execute_run else {}
        thunk = _Thunk(fn, args, kwargs, num_returns)
        if num_returns == 1:
            return _Ref(thunk, None)
        return [_Ref(thunk, i) for i in range(num_returns)]

    def wait(self, refs: list, timeout: float):
        if not refs:
            return [], []
        first = refs[0]
        try:
            first.thunk.run()
        except Cancelled:
            raise
        except Exception:
            pass  # surfaces from get()
        return [first], refs[1:]

    def get(self, ref):
        return ref.get()

    def cancel(self, refs) -> None:
        """Nothing is in flight between two waits."""

    def close(self) -> None:
        pass


def ray_temp_dir() -> str:
    """Where a local Ray instance keeps its session files: the data directory, or the system temp."""
    from unlearn_core import paths

    preferred = (paths.data_dir() / "ray").resolve()
    source_tree = Path(__file__).resolve().parents[1]
    # Never inside the source tree, even where a data directory lives there (the tests' default, git-ignored).
    if len(str(preferred)) <= MAX_RAY_TEMP_DIR and source_tree not in preferred.parents:
        return str(preferred)
    return os.path.join(tempfile.gettempdir(), f"unlearn-ray-{os.getuid()}")


def _local_auth_token(temp_dir: str) -> None:
    """Give a local Ray instance its token file beside its temp files, not in ``~/.ray``.

    Ray 2.60 turns token authentication on for a new local instance and would
    write the token to ``~/.ray/auth_token``; a token the user set
    (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``RAY_AUTH_MODE``) is left alone.
    """
    if any(os.environ.get(name) for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")):
        return
    import secrets

    path = Path(temp_dir) / "auth_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or not path.read_text().strip():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)


class RayEngine:
    """Tasks on Ray: an embedded local instance, or an existing cluster at ``address``."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, gpus_per_run: float = 0.0):
        try:
            import ray
        except ImportError:
            raise SweepError("the ray engine needs the ray package (pip install -r requirements.txt); "
                             "or use --engine inline") from None
        self.ray = ray
        self.gpus_per_run = float(gpus_per_run or 0.0)
        self.owned = False
        # No usage report leaves the machine (and none is attempted offline).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        package_dir = str(Path(__file__).resolve().parent)
        if ray.is_initialized():
            pass  # someone in this process (the app, a test) already runs Ray: share it, leave it running
        elif address:
            try:
                # The package travels with the job: cluster nodes need not have this checkout.
                ray.init(address=address, runtime_env={"py_modules": [package_dir]}, log_to_driver=False,
                         logging_level="ERROR")
            except Exception as error:
                raise SweepError(f"cannot join the Ray cluster at {address!r}: {_first_line(error)}") from None
            self.owned = True
        else:
            # Workers are spawned by this process's raylet and inherit its environment: the package's parent
            # on PYTHONPATH lets them import unlearn_core from a checkout that is not installed.
            parent = str(Path(package_dir).parent)
            current = os.environ.get("PYTHONPATH", "")
            if parent not in current.split(os.pathsep):
                os.environ["PYTHONPATH"] = parent + (os.pathsep + current if current else "")
            cpus = int(num_cpus or os.cpu_count() or 1)
            temp_dir = ray_temp_dir()
            _local_auth_token(temp_dir)
            try:
                ray.init(num_cpus=cpus, _temp_dir=temp_dir, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", configure_logging=True)
            except Exception as error:
                raise SweepError(f"cannot start a local Ray instance: {_first_line(error)}") from None
            self.owned = True
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 1))
        if self.gpus_per_run > 0:
            gpus = float(resources.get("GPU", 0))
            if gpus <= 0:
                self.close()
                raise SweepError("--gpus-per-run asks for GPUs but the Ray cluster has none")
            self.slots = max(1, min(cpus, int(gpus / self.gpus_per_run)))
        else:
            self.slots = max(1, cpus)
        self._remote = {}

    def _fn(self, fn, num_returns: int):
        key = (fn, num_returns)
        if key not in self._remote:
            # max_retries: a worker killed mid-task (OOM killer, a lost node) is retried; a method's own error
            # comes back as a value and is never retried.
            self._remote[key] = self.ray.remote(fn).options(num_cpus=1, num_gpus=self.gpus_per_run or 0,
                                                            max_retries=3, num_returns=num_returns)
        return self._remote[key]

    def submit(self, fn, args, num_returns: int = 1, kind: str = "run"):
        return self._fn(fn, num_returns).remote(*args)

    def wait(self, refs: list, timeout: float):
        return self.ray.wait(refs, num_returns=1, timeout=timeout)

    def get(self, ref):
        return self.ray.get(ref)

    def cancel(self, refs) -> None:
        for ref in refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass  # already finished or gone

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        self.owned = False


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _task_error(error: BaseException) -> str:
    """One line for a task that raised (Ray wraps the cause; the inline engine does not)."""
    from unlearn_core.jsonsafe import error_text

    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return error_text(cause)
    name = type(error).__name__
    if name in ("WorkerCrashedError", "TaskCancelledError", "ObjectLostError", "OwnerDiedError",
                "NodeDiedError"):
        return f"{name}: {_first_line(error)}"
    return error_text(error)


# -- the driver ----------------------------------------------------------------------------------------------------
def _format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _run_config(planned: PlannedRun, recipe: dict, device: str, tag: str, infos: dict, report: dict | None,
                engine: str) -> dict:
    original = infos.get(("original", None, planned.seed)) or {}
    retrained = infos.get(("retrain", planned.cell.forget, planned.seed)) or {}
    return {"dataset": planned.cell.dataset, "model": planned.cell.model, "forget": planned.cell.forget,
            "method": planned.cell.method, "params": planned.cell.params_dict, "seed": planned.seed,
            "device": device, "tag": tag, "recipe": recipe, "original_checkpoint": original.get("key"),
            "retrained_checkpoint": retrained.get("key"),
            "n_forget": (report or {}).get("n_forget"), "sweep": tag, "sweep_key": planned.key,
            "sweep_role": planned.role, "sweep_cell": planned.cell.cell_id(), "engine": engine}


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
    from unlearn_core.checkpoints import save_checkpoint
    from unlearn_core.data import load_dataset
    from unlearn_core.device import pick_device
    from unlearn_core.store import RunStore
    from unlearn_core.training import default_recipe

    if engine not in ENGINES:
        raise SweepError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise SweepError("--address needs --engine ray")
    try:
        gpus_per_run = float(gpus_per_run or 0.0)
    except (TypeError, ValueError):
        raise SweepError(f"--gpus-per-run must be a number, got {gpus_per_run!r}") from None
    if not 0.0 <= gpus_per_run <= 8.0 or not math.isfinite(gpus_per_run):
        raise SweepError(f"--gpus-per-run must be between 0 and 8, got {gpus_per_run}")
    spec = validate(spec)
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    bundle = load_dataset(spec.dataset)  # fails early on an unknown or unreachable data set
    recipe = default_recipe(bundle.name, **(spec.recipe_overrides or {})).as_dict()
    if engine == "ray":
        device_name = "cuda" if gpus_per_run > 0 else "cpu"
        threads = 1 if threads is None else threads
    else:
        device_name = str(pick_device(device))
    device_kind = device_name.split(":")[0]
    tag = spec.tag or default_tag(spec)
    store = store or RunStore()
    planned = plan(spec, recipe, device_kind)
    store.save_sweep(tag, kind, {**spec.as_dict(), "recipe": recipe, "device": device_kind})
    # The tag shows what this invocation asks for: runs of an earlier request under the same tag (other code, a
    # narrower grid) stay in the store but leave the sweep, so no cell counts a seed twice.
    store.unlink_sweep_runs(tag, {p.key for p in planned})
    held = store.find_keys([p.key for p in planned])
    pending, skipped = [], 0
    for p in planned:
        found = held.get(p.key)
        if found is not None and (found["status"] == "done" or not retry_failed):
            store.link_sweep_run(tag, p.key, found["id"], p.role)
            skipped += 1
        else:
            pending.append(p)
    started = time.perf_counter()
    counts = {"done": 0, "failed": 0}

    def emit(running: int, seconds_left: float | None) -> None:
        if progress is None:
            return
        finished = counts["done"] + counts["failed"]
        message = (f"{counts['done']} done, {running} running, {counts['failed']} failed"
                   + (f", {skipped} already stored" if skipped else "")
                   + (f", ~{_format_seconds(seconds_left)} left" if finished < len(pending) else ""))
        progress(SweepEvent(stage="sweep", step=finished, steps=len(pending), message=message,
                            done=counts["done"], failed=counts["failed"], running=running, skipped=skipped,
                            seconds_left=seconds_left))

    emit(0, None)  # the first event already tells how many runs were stored before
    engine_obj = None
    if pending:
        if engine == "ray":
            engine_obj = RayEngine(address, num_cpus, gpus_per_run)
        else:
            engine_obj = InlineEngine(device_name, None, cancel)
    try:
        if pending:
            _drive(engine_obj, pending, spec, recipe, device_name, threads, tag, store, save_checkpoints, counts,
                   emit, log, cancel, started, save_checkpoint)
    finally:
        if engine_obj is not None:
            engine_obj.close()
    result = sweep_result(store, tag)
    result.update({"engine": engine, "ran": len(pending), "skipped": skipped,
                   "seconds": time.perf_counter() - started})
    return result


def _model_ref(engine, model_refs: dict, spec: SweepSpec, kind: str, forget: str | None, seed: int, recipe: dict,
               device_name: str, threads: int | None):
    """The (blob, info) refs of a model task, submitted once per engine: every run that needs it shares it."""
    key = (kind, forget if kind != "original" else None, seed)
    if key not in model_refs:
        model_refs[key] = engine.submit(train_model, (kind, spec.dataset, spec.model, forget or "", seed, recipe,
                                                      device_name, threads), num_returns=2, kind="model")
    return model_refs[key]


def _drive(engine, pending, spec, recipe, device_name, threads, tag, store, save_checkpoints, counts, emit, log,
           cancel, started, save_checkpoint, model_refs: dict | None = None) -> None:
    """Submit model tasks and runs, then record each result as it arrives (the driver alone writes the store)."""
    model_refs = {} if model_refs is None else model_refs
    already = set(model_refs)

    def model_ref(kind: str, forget: str | None, seed: int):
        return _model_ref(engine, model_refs, spec, kind, forget, seed, recipe, device_name, threads)

    run_refs = {}
    for p in pending:
        original_blob, _ = model_ref("original", None, p.seed)
        retrained_blob, _ = model_ref("retrain", p.cell.forget, p.seed)
        run = {"key": p.key, "dataset": p.cell.dataset, "model": p.cell.model, "forget": p.cell.forget,
               "method": p.cell.method, "params": p.cell.params_dict, "seed": p.seed, "recipe": recipe,
               "evidence": spec.evidence if p.role == "run" and p.cell.method != "retrain" else None,
               "confidences": spec.collects_confidences()}
        ref = engine.submit(execute_run, (run, original_blob, retrained_blob, device_name, threads,
                                          save_checkpoints))
        run_refs[ref] = p
    infos: dict = {}
    info_refs = {info: key for key, (_, info) in model_refs.items() if key not in already}
    waiting = list(info_refs)  # model infos first: they are small and the run configs name the checkpoints
    outstanding = list(run_refs)
    recorded = set()
    first_result_at = None
    try:
        while waiting or outstanding:
            if cancel is not None and cancel.is_set():
                raise Cancelled("sweep cancelled")
            queue = waiting if waiting else outstanding
            ready, _ = engine.wait(queue, timeout=0.5)
            models_left = len(waiting)
            running = min(len(outstanding), max(0, engine.slots - models_left))
            finished = counts["done"] + counts["failed"]
            seconds_left = None
            if finished and first_result_at is not None:
                per_run = (time.perf_counter() - started) / finished
                seconds_left = per_run * (len(pending) - finished)
            for ref in ready:
                if ref in info_refs:
                    waiting.remove(ref)
                    try:
                        infos[info_refs[ref]] = engine.get(ref)
                    except Cancelled:
                        raise
                    except Exception as error:  # the runs that need this model fail with it, one by one
                        log(f"training {info_refs[ref][0]} model (seed {info_refs[ref][2]}) failed: "
                            f"{_task_error(error)}")
                    continue
                outstanding.remove(ref)
                planned = run_refs.pop(ref)
                try:
                    out = engine.get(ref)
                except Cancelled:
                    raise
                except Exception as error:
                    out = {"report": None, "state": None, "error": _task_error(error)}
                if planned.key in recorded:
                    continue  # never twice, whatever an engine hands back
                recorded.add(planned.key)
                first_result_at = first_result_at or time.perf_counter()
                _record(store, tag, planned, out, recipe, device_name, infos, engine.name, save_checkpoints,
                        save_checkpoint)
                counts["failed" if out.get("error") else "done"] += 1
                _log_run(log, planned, out, counts, len(pending), started)
            emit(running if outstanding else 0, seconds_left)
    except BaseException:
        engine.cancel(list(run_refs) + waiting)
        raise


def _record(store, tag, planned, out, recipe, device_name, infos, engine_name, save_checkpoints,
            save_checkpoint) -> None:
    """Record one result as a normal run (as ``run_and_record`` does), then link it to the sweep under its key."""
    from unlearn_core.jsonsafe import one_line
    from unlearn_core.store.common import warn

    config = _run_config(planned, recipe, device_name, tag, infos, out.get("report"), engine_name)
    run_id = store.start(config)
    if out.get("error"):
        store.fail(run_id, out["error"])
    else:
        checkpoint, note = None, None
        if save_checkpoints and out.get("state") is not None:
            try:
                save_checkpoint(store.checkpoint_path(run_id), _StateHolder(out["state"]), {"run_id": run_id, **config})
                checkpoint = store.checkpoint_path(run_id)
            except OSError as error:
                # As for a single run: the report took the work and fits in a row; keep it, say the model is missing.
                from unlearn_core.outputs import describe_os_error

                note = f"checkpoint not saved: {describe_os_error(error)}"
                warn(f"run {run_id}: {note}; the report is recorded")
        store.finish(run_id, out["report"], None if checkpoint is None else str(checkpoint), note=note)
        if checkpoint is not None:
            try:
                store.enforce_checkpoint_quota()
            except (UnlearnError, OSError) as error:  # the run is recorded; a failed prune must not undo that
                warn(f"the run checkpoint quota could not be applied: {one_line(error)}")
    store.link_sweep_run(tag, planned.key, run_id, planned.role)


class _StateHolder:
    """Just enough of an ``nn.Module`` for ``save_checkpoint``: a state dict."""

    def __init__(self, state: dict):
        self._state = state

    def state_dict(self) -> dict:
        return self._state


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


# -- search --------------------------------------------------------------------------------------------------------
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
    from unlearn_core.checkpoints import save_checkpoint
    from unlearn_core.data import load_dataset
    from unlearn_core.store import RunStore
    from unlearn_core.training import default_recipe

    if engine != "ray":
        raise SweepError("--search runs on Ray Tune: use --engine ray")
    if objective not in OBJECTIVES:
        raise SweepError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SweepError(f"--trials must be at least 1, got {trials!r}")
    spec = validate(spec)
    methods = [m for m in spec.methods if m != "retrain"]
    if not methods:
        raise SweepError("--search needs a method other than retrain")
    # Tune's old console reporter stays silent at verbose=0; the new one prints a summary box to stdout.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401  (fail here, before any work)
        import optuna  # noqa: F401
    except ImportError as error:
        raise SweepError(f"--search optuna needs ray[tune] and optuna (pip install -r requirements.txt): "
                         f"{_first_line(error)}") from None
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    gpus_per_run = float(gpus_per_run or 0.0)
    bundle = load_dataset(spec.dataset)
    recipe = default_recipe(bundle.name, **(spec.recipe_overrides or {})).as_dict()
    device_name = "cuda" if gpus_per_run > 0 else "cpu"
    tag = spec.tag or f"search-{_hash({**spec.as_dict(), 'trials': trials, 'objective': objective})[:10]}"
    store = store or RunStore()
    store.save_sweep(tag, "search", {**spec.as_dict(), "recipe": recipe, "device": device_name,
                                     "search": {"searcher": "optuna", "trials": trials, "objective": objective}})
    started = time.perf_counter()
    counts = {"done": 0, "failed": 0}
    references = [p for p in plan(SweepSpec(spec.dataset, spec.model, spec.forgets, [], {}, spec.seeds,
                                            spec.retrains), recipe, device_name) if p.role == "reference"]
    held = store.find_keys([p.key for p in references])
    pending = []
    for p in references:
        if p.key in held:
            store.link_sweep_run(tag, p.key, held[p.key]["id"], p.role)
        else:
            pending.append(p)
    total_trials = trials * len(methods)

    def emit(running: int, seconds_left: float | None) -> None:
        if progress is not None:
            finished = counts["done"] + counts["failed"]
            progress(SweepEvent(stage="sweep", step=finished, steps=len(pending) + total_trials,
                                message=f"{counts['done']} done, {running} running, {counts['failed']} failed",
                                done=counts["done"], failed=counts["failed"], running=running))

    engine_obj = RayEngine(address, num_cpus, gpus_per_run)
    summary = {}
    try:
        model_refs: dict = {}
        if pending:
            _drive(engine_obj, pending, spec, recipe, device_name, 1, tag, store, True, counts, emit, log, None,
                   started, save_checkpoint, model_refs)
        for forget in spec.forgets:
            for s in spec.seeds:
                _model_ref(engine_obj, model_refs, spec, "original", None, s, recipe, device_name, 1)
                _model_ref(engine_obj, model_refs, spec, "retrain", forget, s, recipe, device_name, 1)
        blobs = {key: refs[0] for key, refs in model_refs.items()}
        for method in methods:
            summary[method] = _search_method(engine_obj, spec, method, trials, objective, blobs, recipe,
                                             device_name, gpus_per_run, tag, store, counts, emit, log, seed,
                                             save_checkpoint)
    finally:
        engine_obj.close()
    result = sweep_result(store, tag)
    result.update({"engine": engine, "ran": len(pending) + counts.get("recorded", 0), "skipped": len(references) -
                   len(pending), "seconds": time.perf_counter() - started, "search": summary})
    return result


def _search_method(engine, spec, method, trials, objective, blobs, recipe, device_name, gpus_per_run, tag, store,
                   counts, emit, log, seed, save_checkpoint) -> dict:
    import logging

    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from unlearn_core import paths

    logging.getLogger("optuna").setLevel(logging.WARNING)  # one line per study and trial otherwise
    from unlearn_core.methods import get_method

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
            log(f"search {method}: a trial failed ({_first_line(result.error) if result.error else 'no result'})")
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
            _record(store, tag, planned, out, recipe, device_name, {}, "ray-tune", False, save_checkpoint)
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


# -- aggregation ---------------------------------------------------------------------------------------------------
def summarize(values: list[float]) -> dict:
    """Mean, sample standard deviation and a two-sided 95 % t interval of the mean (None where undefined)."""
    clean = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(clean)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = sum(clean) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    from scipy.stats import t

    std = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: Evidence numbers (docs/EVIDENCE.md) a run's report may carry, per model: (section, key) -> metric suffix.
EVIDENCE_METRICS = (("probe", "probe_forget"), ("probe", "probe_retain"), ("probe", "knn_forget"),
                    ("relearn", "relearn_steps"))


def _run_metrics(report: dict) -> dict:
    """Every scalar of the report's ``unlearned`` section, plus the run's Avg. Gap, seconds and speed-up.

    A run with evidence adds ``ev_<key>`` for the unlearned model and
    ``ev_<key>_original`` / ``ev_<key>_retrained`` for the two references
    (probe accuracies; relearn steps, ``None`` when capped).
    """
    unlearned = report.get("unlearned") or {}
    out = {k: unlearned.get(k) for k in MODEL_METRICS}
    out.update({k: v for k, v in unlearned.items() if k not in out and (v is None or _is_number(v))})
    out.update({k: report.get(k) for k in ("avg_gap", "seconds", "rte")})
    evidence = report.get("evidence") or {}
    for section, key in EVIDENCE_METRICS:
        for model, suffix in (("unlearned", ""), ("original", "_original"), ("retrained", "_retrained")):
            value = ((evidence.get(section) or {}).get(model) or {}).get(key)
            if _is_number(value):
                out[f"ev_{key}{suffix}"] = value
    return out


def _metric_order(records: list[dict]) -> list[str]:
    """The declared metrics first, then any other number the runs carry, in first-seen order."""
    names = list(MODEL_METRICS)
    for record in records:
        names.extend(k for k in record["metrics"] if k not in names and k not in RUN_ONLY_METRICS)
    return names + list(RUN_ONLY_METRICS)


def _cell_identity(run: dict) -> tuple:
    return (run["dataset"], run["model"], run["forget"], run["method"], json.dumps(run["params"], sort_keys=True))


def sweep_result(store, tag: str) -> dict:
    """A sweep's cells, runs and aggregates, rebuilt from the run store alone.

    ``forgets`` holds, per forget set, the reference ensemble (every metric's
    mean, std, min and max over its retrained models) and the original model
    over seeds. Each cell holds its runs (id, seed, status, error, metrics) and
    per metric ``summary`` (see :func:`summarize`) plus ``gap`` (cell mean minus
    ensemble mean) and ``inside`` (the mean lies within the ensemble mean ± 2
    ensemble standard deviations; None with fewer than two retrained models).
    Runs are grouped per cell and per forget set, so a score over K unlearned
    and K retrained models per forget set can be computed from ``run_ids``.
    """
    from unlearn_core.methods import get_method

    sweep = store.get_sweep(tag)
    if sweep is None:
        raise SweepError(f"no sweep is recorded with tag {tag!r}")
    spec = sweep["spec"]
    runs = store.sweep_runs(tag)
    forgets: dict[str, dict] = {f: {"forget": f, "references": [], "originals": {}} for f in spec.get("forgets", [])}
    groups: dict[tuple, dict] = {}
    all_records: list[dict] = []
    for run in runs:
        entry = forgets.setdefault(run["forget"], {"forget": run["forget"], "references": [], "originals": {}})
        report = run["report"] or {}
        if report.get("original") and run["seed"] not in entry["originals"]:
            entry["originals"][run["seed"]] = report["original"]
        record = {"run_id": run["id"], "seed": run["seed"], "status": run["status"], "error": run["error"],
                  "key": run["run_key"], "metrics": _run_metrics(report) if report else {},
                  "flags": {k: report.get(k) for k in REPORT_FLAGS if k in report},
                  # Read for the distinguisher below and dropped before returning (hundreds of numbers per run).
                  "_confidences": (report.get("forget_confidences"), report.get("forget_split_key"))}
        all_records.append(record)
        if run["role"] == "reference":
            entry["references"].append(record)
        # A "retrain" cell asked for in --methods is the reference at the sweep's seeds (same keys, run once).
        as_cell = run["method"] == "retrain" and "retrain" in spec.get("methods", []) and \
            run["seed"] in spec.get("seeds", [])
        if run["role"] == "run" or as_cell:
            identity = _cell_identity(run)
            group = groups.setdefault(identity, {"dataset": run["dataset"], "model": run["model"],
                                                 "forget": run["forget"], "method": run["method"],
                                                 "params": run["params"], "runs": []})
            group["runs"].append(record)
    metrics = _metric_order(all_records)
    forget_out = []
    for name, entry in forgets.items():
        done = [r for r in entry["references"] if r["status"] == "done"]
        reference = {}
        for metric in metrics:
            values = [r["metrics"].get(metric) for r in done]
            stats = summarize(values)
            clean = [v for v in values if v is not None]
            stats.update({"min": min(clean) if clean else None, "max": max(clean) if clean else None})
            reference[metric] = stats
        seeds = sorted(entry["originals"])
        original = {metric: summarize([entry["originals"][s].get(metric) for s in seeds])
                    for metric in metrics if metric not in RUN_ONLY_METRICS or metric == "avg_gap"}
        per_seed = {"original": {s: entry["originals"][s] for s in seeds},
                    "reference": {r["seed"]: r["metrics"] for r in done}}
        forget_out.append({"forget": name, "reference": {"seeds": sorted(r["seed"] for r in done),
                                                         "run_ids": [r["run_id"] for r in done],
                                                         "failed": [r for r in entry["references"]
                                                                    if r["status"] != "done"],
                                                         "metrics": reference},
                           "original": {"seeds": seeds, "metrics": original},
                           "per_seed": per_seed})
    references = {f["forget"]: f["reference"]["metrics"] for f in forget_out}
    method_order = {m: i for i, m in enumerate(spec.get("methods", []))}
    forget_order = {f: i for i, f in enumerate(spec.get("forgets", []))}
    cells_out = []
    for identity, group in sorted(groups.items(), key=lambda item: (forget_order.get(item[1]["forget"], 99),
                                                                      method_order.get(item[1]["method"], 99),
                                                                      item[0][4])):
        group["runs"].sort(key=lambda r: r["seed"])
        done = [r for r in group["runs"] if r["status"] == "done"]
        summary = {}
        for metric in metrics:
            stats = summarize([r["metrics"].get(metric) for r in done])
            ref = references.get(group["forget"], {}).get(metric) or {}
            gap = inside = None
            if metric not in RUN_ONLY_METRICS and stats["mean"] is not None and ref.get("mean") is not None:
                gap = stats["mean"] - ref["mean"]
                if ref.get("n", 0) >= 2:
                    inside = abs(gap) <= 2 * ref["std"] + 1e-9
            stats.update({"gap": gap, "inside": inside})
            summary[metric] = stats
        cell = Cell(group["dataset"], group["model"], group["forget"], group["method"],
                    tuple(sorted(group["params"].items())))
        try:
            title = get_method(group["method"]).title
        except UnlearnError:
            title = group["method"]
        cells_out.append({"id": cell.cell_id(), **group, "title": title, "seeds": [r["seed"] for r in done],
                          "failed": len(group["runs"]) - len(done), "summary": summary,
                          "distinguisher": _distinguisher(done, forgets.get(group["forget"], {}))})
    for record in all_records:
        record.pop("_confidences", None)
    return {"tag": tag, "kind": sweep["kind"], "spec": spec, "metrics": metrics, "dataset": spec.get("dataset"),
            "model": spec.get("model"), "seeds": spec.get("seeds"), "retrains": spec.get("retrains"),
            "device": spec.get("device"), "created_at": sweep["created_at"], "forgets": forget_out,
            "cells": cells_out}


#: Fewer models than this per side and the score mostly measures chance (docs/EVIDENCE.md: two identical
#: distributions score about 0.27 at K = 8 with delta 0.01).
DISTINGUISHER_MIN_MODELS = 8


def _distinguisher(cell_runs: list[dict], forget_entry: dict) -> dict | None:
    """The retrain-distinguisher score of one cell against its forget set's reference ensemble.

    Needs the runs' stored forget-set confidences (a sweep with at least two
    seeds and two retrained models keeps them) and one forget set shared by
    every model: a random forget set drawn anew per seed pairs no sample
    across models, so it gets a note instead of a score.
    """
    import numpy as np

    from unlearn_core.evidence import retrain_distinguisher_score

    references = [r for r in forget_entry.get("references", []) if r["status"] == "done"]
    unlearned = [r["_confidences"] for r in cell_runs if r.get("_confidences", (None,))[0] is not None]
    retrained = [r["_confidences"] for r in references if r.get("_confidences", (None,))[0] is not None]
    if len(unlearned) < 2 or len(retrained) < 2:
        return None
    split_keys = {key for _, key in unlearned + retrained}
    out = {"k_unlearned": len(unlearned), "k_retrained": len(retrained), "score": None,
           "meaningful": min(len(unlearned), len(retrained)) >= DISTINGUISHER_MIN_MODELS, "note": None}
    if len(split_keys) != 1:
        out["note"] = "the forget set differs between seeds (random forgetting), so no sample pairs across models"
        return out
    try:
        result = retrain_distinguisher_score(np.array([c for c, _ in unlearned]).T,
                                             np.array([c for c, _ in retrained]).T)
    except UnlearnError as error:  # e.g. a diverged model's confidences are not finite
        out["note"] = str(error)
        return out
    out["score"] = result["score"]
    if not out["meaningful"]:
        out["note"] = f"fewer than {DISTINGUISHER_MIN_MODELS} models per side: compare cells only at equal K"
    return out


# -- output --------------------------------------------------------------------------------------------------------
TABLE_METRICS = (("FA", "FA"), ("RA", "RA"), ("TA", "TA"), ("MIA_entropy", "MIA-ent"), ("avg_gap", "Avg.Gap"),
                 ("seconds", "Time (s)"))


def _varied(result: dict) -> dict[str, set]:
    """Per method, the parameters a reader needs to tell its cells apart (grid names, and any that differ)."""
    spec = result.get("spec") or {}
    varied: dict[str, set] = {}
    for cell in result["cells"]:
        names = varied.setdefault(cell["method"], set((spec.get("grid") or {}).get(cell["method"], {})))
        for other in result["cells"]:
            if other["method"] == cell["method"]:
                names.update(k for k, v in cell["params"].items() if other["params"].get(k) != v)
    return varied


def _params_text(params: dict, method: str, varied: dict[str, set]) -> str:
    varied = varied.get(method, set())
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(params.items()) if k in varied) or "defaults"


def _stat_text(stats: dict, mark: bool = False) -> str:
    mean = stats.get("mean")
    if mean is None:
        return "–"
    text = f"{mean:.2f}"
    if stats.get("ci_low") is not None:
        text += f" ± {stats['ci_high'] - mean:.2f}"
    if mark and stats.get("inside"):
        text += " ✓"
    return text


def _distinguisher_text(score: dict | None) -> str:
    if not score:
        return "–"
    if score["score"] is None:
        return "n/a"
    k = min(score["k_unlearned"], score["k_retrained"])
    return f"{score['score']:.3f} ({k})" + ("" if score["meaningful"] else "*")


def markdown_tables(result: dict) -> str:
    """Per forget set: the reference ensemble, the original model, then every cell (mean ± 95 % half-width).

    A ✓ marks a model metric whose mean lies inside the reference ensemble's spread.
    """
    parts = []
    spec = _varied(result)
    for entry in result["forgets"]:
        ref = entry["reference"]
        parts.append(f"### {result['dataset']} / {result['model']}, forget `{entry['forget']}` "
                     f"(seeds {','.join(map(str, result.get('seeds') or []))}; reference: "
                     f"{len(ref['run_ids'])} retrained models)\n")
        scored = [c.get("distinguisher") for c in result["cells"] if c["forget"] == entry["forget"]]
        with_score = any(d is not None for d in scored)
        header = "| Cell | n | " + " | ".join(label for _, label in TABLE_METRICS) + \
            (" | Forget quality (K) |" if with_score else " |")
        lines = [header, "|" + "---|" * (len(TABLE_METRICS) + 2 + with_score)]
        ref_cells = []
        for key, _ in TABLE_METRICS:
            stats = ref["metrics"][key]
            ref_cells.append("–" if stats["mean"] is None else
                             f"{stats['mean']:.2f}" + (f" ± {stats['std']:.2f} sd" if stats.get("std") is not None else ""))
        extra = " | –" if with_score else ""
        lines.append(f"| Retrain ensemble | {len(ref['run_ids'])} | " + " | ".join(ref_cells) + extra + " |")
        original = entry["original"]["metrics"]
        lines.append(f"| Original | {len(entry['original']['seeds'])} | " + " | ".join(
            _stat_text(original[key]) if key in original else "–" for key, _ in TABLE_METRICS) + extra + " |")
        for cell in (c for c in result["cells"] if c["forget"] == entry["forget"]):
            name = f"`{cell['method']}` {_params_text(cell['params'], cell['method'], spec)}"
            if cell["failed"]:
                name += f" [{cell['failed']} failed]"
            values = [_stat_text(cell["summary"][key], key not in RUN_ONLY_METRICS) for key, _ in TABLE_METRICS]
            if with_score:
                values.append(_distinguisher_text(cell.get("distinguisher")))
            lines.append(f"| {name} | {len(cell['seeds'])} | " + " | ".join(values) + " |")
        parts.append("\n".join(lines) + "\n")
        if with_score:
            notes = sorted({d["note"] for d in scored if d and d.get("note")})
            parts.append("Forget quality: the retrain-distinguisher score of the NeurIPS 2023 unlearning challenge "
                         "(1 = no threshold attack tells the unlearned models from the retrained ones; "
                         "docs/EVIDENCE.md); K = models per side. " + " ".join(f"Note: {n}." for n in notes) + "\n")
        errors = [f"- `{c['method']}` {_params_text(c['params'], c['method'], spec)} seed {r['seed']}: {r['error']}"
                  for c in result["cells"] if c["forget"] == entry["forget"] for r in c["runs"]
                  if r["status"] != "done"]
        errors += [f"- reference seed {r['seed']}: {r['error']}" for r in ref["failed"]]
        if errors:
            parts.append("Failed runs:\n" + "\n".join(errors) + "\n")
    return "\n".join(parts)


def flat_rows(result: dict) -> list[dict]:
    """One CSV row per cell (aggregates) and one per run (its metrics), told apart by ``row``."""
    rows = []
    base = {"sweep": result["tag"], "dataset": result["dataset"], "model": result["model"]}
    for entry in result["forgets"]:
        row = {**base, "row": "reference", "forget": entry["forget"], "method": "retrain", "params": "{}",
               "n": len(entry["reference"]["run_ids"])}
        for metric in result["metrics"]:
            stats = entry["reference"]["metrics"][metric]
            row.update({f"{metric}_mean": stats["mean"], f"{metric}_std": stats["std"]})
        rows.append(row)
    for cell in result["cells"]:
        row = {**base, "row": "cell", "cell": cell["id"], "forget": cell["forget"], "method": cell["method"],
               "params": json.dumps(cell["params"], sort_keys=True), "n": len(cell["seeds"]),
               "failed": cell["failed"],
               "forget_quality": (cell.get("distinguisher") or {}).get("score"),
               "forget_quality_k": min((cell.get("distinguisher") or {}).get("k_unlearned", 0),
                                       (cell.get("distinguisher") or {}).get("k_retrained", 0)) or None}
        for metric in result["metrics"]:
            stats = cell["summary"][metric]
            row.update({f"{metric}_{part}": stats[part]
                        for part in ("mean", "std", "ci_low", "ci_high", "gap", "inside")})
        rows.append(row)
        for run in cell["runs"]:
            run_row = {**base, "row": "run", "cell": cell["id"], "forget": cell["forget"], "method": cell["method"],
                       "params": json.dumps(cell["params"], sort_keys=True), "run_id": run["run_id"],
                       "seed": run["seed"], "status": run["status"], "error": run["error"]}
            run_row.update({f"{metric}_value": run["metrics"].get(metric) for metric in result["metrics"]})
            rows.append(run_row)
    return rows


def write_csv(result: dict, path: str | Path) -> None:
    from unlearn_core.checkpoints import atomic_write_bytes

    atomic_write_bytes(Path(path), csv_bytes(result))


def write_json(result: dict, path: str | Path) -> None:
    from unlearn_core.checkpoints import atomic_write_bytes

    atomic_write_bytes(Path(path), json_bytes(result))


def json_bytes(result: dict) -> bytes:
    from unlearn_core.jsonsafe import jsonable

    return (json.dumps(jsonable(result), indent=2) + "\n").encode()


def csv_bytes(result: dict) -> bytes:
    rows = flat_rows(result)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns or ["sweep"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
                         for k, v in row.items()})
    return buffer.getvalue().encode()


def new_tag(prefix: str = "sweep") -> str:
    return f"{prefix}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
