"""The plan of a sweep: its cells (forget set x method x grid point), the reference ensemble's seeds, and the run
key that identifies a run's result.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from unlearn_core.sweeps.spec import SweepSpec, stable_hash


KEY_VERSION = 1


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
        return stable_hash({"dataset": self.dataset, "model": self.model, "forget": self.forget, "method": self.method,
                      "params": self.params_dict})[:12]


@dataclass(frozen=True)
class PlannedRun:
    """A cell at one seed; ``role`` is ``run`` or ``reference`` (a retrained model of the ensemble)."""

    cell: Cell
    seed: int
    role: str
    key: str
    #: The seed of the original model the run starts from (``seed`` unless the protocol is ``competition``).
    original_seed: int | None = None

    @property
    def start_seed(self) -> int:
        return self.seed if self.original_seed is None else self.original_seed


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


def run_key(cell: Cell, seed: int, recipe: dict, device_kind: str, evidence: dict | None = None,
            original_seed: int | None = None) -> str:
    """Everything that determines a run's result (the code version too: new code, new runs).

    ``evidence`` enters the key only when asked for: a run with evidence holds more than one without.
    ``original_seed`` (the ``competition`` protocol: the run starts from the original model of another seed)
    enters it only when it differs from ``seed``, so such a run is never taken for a ``seeds`` run.
    """
    from unlearn_core.store import code_version

    payload = {"v": KEY_VERSION, "dataset": cell.dataset, "model": cell.model, "forget": cell.forget,
               "method": cell.method, "params": cell.params_dict, "seed": int(seed), "recipe": recipe,
               "device": device_kind, "code": code_version()}
    if evidence:
        payload["evidence"] = evidence
    if original_seed is not None and int(original_seed) != int(seed):
        payload["original_seed"] = int(original_seed)
    return stable_hash(payload)


def plan(spec: SweepSpec, recipe: dict, device_kind: str) -> list[PlannedRun]:
    """References first (per forget set), then every cell at every seed; a run asked for twice appears once.

    Under the ``competition`` protocol a method run at seed ``s`` starts from the original model of the first
    seed (``original_seed``); the retrain method and the references need no original model and are unchanged.
    """
    runs, seen = [], set()
    for forget in spec.forgets:
        reference = Cell(spec.dataset, spec.model, forget, "retrain", ())
        for seed in reference_seeds(spec.seeds, spec.reference_count()):
            key = run_key(reference, seed, recipe, device_kind)
            seen.add(key)
            runs.append(PlannedRun(reference, seed, "reference", key))
    for cell in cells(spec):
        for seed in spec.seeds:
            retrain = cell.method == "retrain"
            start = None if retrain else spec.original_seed(seed)
            key = run_key(cell, seed, recipe, device_kind, None if retrain else spec.evidence, start)
            if key not in seen:
                seen.add(key)
                runs.append(PlannedRun(cell, seed, "run", key, None if start == seed else start))
    return runs


def sweep_cost(spec: SweepSpec, store=None, device_kind: str | None = None):
    """The :class:`~unlearn_core.cost.WorkCost` of a validated sweep: what it will train that nothing holds yet.

    Method runs the store already holds under their keys (``store``) cost nothing; every other run costs one
    training, and so does each original (per seed) and each retrained model (per forget set and seed) that the
    pending runs need and the checkpoint cache does not hold.
    """
    from unlearn_core.cost import WorkCost
    from unlearn_core.data import load_dataset
    from unlearn_core.device import pick_device
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.training import default_recipe, is_cached

    bundle = load_dataset(spec.dataset)
    recipe = default_recipe(bundle.name, **(spec.recipe_overrides or {}))
    device_kind = device_kind or pick_device(None).type
    planned = plan(spec, recipe.as_dict(), device_kind)
    held = store.find_keys([p.key for p in planned]) if store is not None else {}
    pending = [p for p in planned if (held.get(p.key) or {}).get("status") != "done"]
    methods = sum(1 for p in pending if p.cell.method != "retrain")
    seeds = {p.start_seed for p in pending if p.role == "run"}  # the originals the runs start from
    originals = sum(1 for seed in seeds if not is_cached("original", bundle, spec.model, seed, recipe))
    splits = {}
    for p in pending:
        splits.setdefault((p.cell.forget, p.seed), None)
    references = 0
    for forget, seed in splits:
        key = ForgetSpec.parse(forget).resolve(bundle, seed).key()
        references += 0 if is_cached("retrain", bundle, spec.model, seed, recipe, key) else 1
    return WorkCost(methods, originals, references)
