"""What a sweep runs and where: the request, parsed from user text and checked before any work.

:class:`SweepSpec` is the request (data set, model, forget sets, methods with
their parameter grids, seeds, reference ensemble size); :func:`validate`
checks it without training. :class:`EngineConfig` is where it runs (engine,
cluster address, CPUs, GPU share per run, torch threads per task), checked in
:meth:`EngineConfig.checked` alone, for grids, benches and searches alike.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from unlearn_core.errors import ParameterError, UnlearnError
from unlearn_core.parsing import ascii_int

ENGINES = ("ray", "inline")
OBJECTIVES = ("avg_gap",)
SEARCHERS = ("optuna",)
#: How a sweep's K unlearned runs of a cell are made (docs/EVIDENCE.md): ``seeds`` trains one original model per
#: seed and runs the method from each; ``competition`` (the NeurIPS 2023 unlearning competition's protocol) runs
#: the method K times, with K method seeds, from the one original model trained with the first seed.
PROTOCOLS = ("seeds", "competition")
#: Fewest models per family the ensemble verdicts need (the attack leaves one out and fits on the rest).
VERDICT_MIN_MODELS = 3
MAX_GPUS_PER_RUN = 8.0
MAX_NUM_CPUS = 100_000
MAX_THREADS = 1024
# The most method runs one sweep may plan: counted from the grid's sizes before any cell is built.
MAX_SWEEP_RUNS = 100_000


class SweepError(UnlearnError):
    """A sweep request is invalid or its engine cannot start."""


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
    #: ``seeds`` or ``competition`` (:data:`PROTOCOLS`).
    protocol: str = "seeds"

    def as_dict(self) -> dict:
        out = {"dataset": self.dataset, "model": self.model, "forgets": list(self.forgets),
               "methods": list(self.methods), "grid": {m: dict(g) for m, g in self.grid.items()},
               "seeds": list(self.seeds), "retrains": self.reference_count(),
               "recipe_overrides": self.recipe_overrides or None}
        if self.evidence:  # only when asked for, so the tags of sweeps without evidence stay as they were
            out["evidence"] = self.evidence
        if self.protocol != "seeds":  # likewise: a seeds sweep's tag does not depend on this field
            out["protocol"] = self.protocol
        return out

    def keeps_verdict_outputs(self) -> bool:
        """Whether runs keep their :func:`~unlearn_core.evidence.run_outputs` for the ensemble verdicts.

        The verdicts need at least :data:`VERDICT_MIN_MODELS` unlearned runs per
        cell and as many retrained models (docs/EVIDENCE.md: K = 8 or more for a
        stable rank).
        """
        return self.reference_count() >= VERDICT_MIN_MODELS and len(self.seeds) >= VERDICT_MIN_MODELS

    def original_seed(self, seed: int) -> int:
        """The seed of the original model a method run at ``seed`` starts from (the first seed under ``competition``)."""
        return int(self.seeds[0]) if self.protocol == "competition" else int(seed)

    def reference_count(self) -> int:
        """``retrains``, or one retrained model per seed when unset (those are trained for the reports anyway)."""
        return len(self.seeds) if self.retrains is None else int(self.retrains)


@dataclass(frozen=True)
class EngineConfig:
    """Where a sweep's tasks run: ``engine`` (``ray`` or ``inline``) and its options, already checked.

    ``address`` (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``; None starts a local instance), ``num_cpus`` (the local
    instance's size) and ``gpus_per_run`` (a GPU share per task, 0 to 8) are Ray's; ``device`` is the inline
    engine's (auto, cpu, cuda[:N], mps); ``threads`` is torch's thread count per task (None: 1 on Ray,
    unchanged inline). Build it with :meth:`checked`.
    """

    engine: str = "ray"
    address: str | None = None
    num_cpus: int | None = None
    gpus_per_run: float = 0.0
    threads: int | None = None
    device: str | None = None

    @classmethod
    def checked(cls, engine: str = "ray", address: str | None = None, num_cpus: Any = None,
                gpus_per_run: Any = 0.0, threads: Any = None, device: str | None = None) -> "EngineConfig":
        """The configuration, or :class:`SweepError` naming the option (as its CLI flag) that is wrong."""
        if engine not in ENGINES:
            raise SweepError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if address and engine != "ray":
            raise SweepError("--address needs --engine ray")
        try:
            gpus = float(gpus_per_run or 0.0) if not isinstance(gpus_per_run, bool) else float("nan")
        except (TypeError, ValueError):
            raise SweepError(f"--gpus-per-run must be a number, got {gpus_per_run!r}") from None
        if not 0.0 <= gpus <= MAX_GPUS_PER_RUN or not math.isfinite(gpus):
            raise SweepError(f"--gpus-per-run must be between 0 and {MAX_GPUS_PER_RUN:g}, got {gpus_per_run}")
        if gpus and engine != "ray":
            raise SweepError("--gpus-per-run needs --engine ray")
        return cls(engine, address or None, _whole_or_none(num_cpus, "--num-cpus", 1, MAX_NUM_CPUS), gpus,
                   _whole_or_none(threads, "--threads", 1, MAX_THREADS), device)

    @property
    def device_name(self) -> str:
        """The torch device tasks run on: Ray's CPU (``cuda`` with a GPU share), inline the chosen device."""
        if self.engine == "ray":
            return "cuda" if self.gpus_per_run > 0 else "cpu"
        from unlearn_core.device import pick_device

        return str(pick_device(self.device))

    @property
    def task_threads(self) -> int | None:
        """torch threads per task: one per Ray task unless set (each task holds one CPU), else as given."""
        return 1 if self.engine == "ray" and self.threads is None else self.threads


def _whole_or_none(value: Any, flag: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    try:
        number = ascii_int(value)
    except (TypeError, ValueError):
        raise SweepError(f"{flag} must be a whole number, got {str(value)[:40]!r}") from None
    if not low <= number <= high:
        raise SweepError(f"{flag} must be a whole number from {low} to {high}, got {number}")
    return number


def stable_hash(payload: Any) -> str:
    """A short, stable hash of a JSON-able payload (run keys, cell ids, default tags)."""
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
            raise ParameterError(f"{flag} must be whole numbers in digits 0-9 separated by commas, got {text!r}")
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
    runs = planned_run_count(grid, methods, len(forgets), len(seeds))
    if runs > MAX_SWEEP_RUNS:
        raise ParameterError(f"this sweep would plan {runs:,} method runs, more than the {MAX_SWEEP_RUNS:,} one sweep "
                             "may hold; use fewer grid values, forget sets or seeds")
    retrains = spec.reference_count()
    if isinstance(retrains, bool) or not 0 <= retrains <= 1000:
        raise ParameterError(f"--retrains must be between 0 and 1000, got {spec.retrains}")
    if spec.protocol not in PROTOCOLS:
        raise ParameterError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {str(spec.protocol)[:40]!r}")
    overrides = dict(spec.recipe_overrides or {})
    unknown = set(overrides) - set(TrainRecipe.__dataclass_fields__)
    if unknown:
        raise ParameterError(f"unknown recipe fields: {', '.join(sorted(unknown))}")
    return SweepSpec(spec.dataset, model, forgets, methods, grid, seeds, retrains, overrides or None, spec.tag,
                     evidence_dict(spec.evidence), spec.protocol)


def planned_run_count(grid: dict[str, dict[str, list]], methods: list[str], forgets: int, seeds: int) -> int:
    """How many method runs a sweep plans: per method the product of its grid's sizes, times forget sets and seeds.

    Computed from the sizes alone, so a grid of 10^10 cells is counted (and refused) without building one.
    """
    per_seed = 0
    for method in methods:
        points = 1
        for values in grid.get(method, {}).values():
            points *= len(values)
        per_seed += points
    return per_seed * forgets * seeds


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
    return f"sweep-{stable_hash(spec.as_dict())[:10]}"


#: The ensemble sizes offered for one run's verdicts (:func:`ensemble_spec`); docs/EVIDENCE.md measures how the
#: methods' rank moves over K = 4, 8, 16.
ENSEMBLE_K_CHOICES = (3, 4, 8, 16)
ENSEMBLE_DEFAULT_K = 8


def ensemble_spec(dataset: str, model: str | None, forget: str, method: str, params: dict | None, seed: int,
                  k: int, owner: str | None = None) -> SweepSpec:
    """The sweep that scores one run's cell against a retrained ensemble, under the competition's protocol.

    The cell is ``method`` with ``params`` (only the method's declared parameters count) on ``forget``; it runs
    at seeds ``seed .. seed + k - 1``, all from the original model of ``seed`` (``protocol="competition"``:
    one original, K unlearning runs, K retrained models: K + (K - 1) trainings beyond what is cached). The
    tag is derived from the request (and ``owner``, so two sessions of a shared server never share one), so
    asking again finds the same sweep and resumes it.
    """
    from unlearn_core.methods import get_method

    if method == "retrain":
        raise SweepError("the retrained model is the reference itself: an ensemble scores the other methods")
    if int(k) < VERDICT_MIN_MODELS:
        raise SweepError(f"an ensemble needs at least {VERDICT_MIN_MODELS} models of each family, not {k}")
    declared = {p.name for p in get_method(method).params}
    grid = {method: {name: [value] for name, value in sorted((params or {}).items()) if name in declared}}
    spec = validate(SweepSpec(dataset=dataset, model=model, forgets=[forget], methods=[method], grid=grid,
                              seeds=list(range(int(seed), int(seed) + int(k))), retrains=int(k),
                              protocol="competition"))
    spec.tag = f"ensemble-{stable_hash({**spec.as_dict(), 'owner': owner or ''})[:10]}"
    return spec
