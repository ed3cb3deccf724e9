"""What a piece of work will train, counted before it is queued, and whether the disk can take it.

A shared server bounds work in *model trainings*: a method run is one, and so
is every original model and every retrained reference that is not in the
checkpoint cache yet (a sweep over new seeds trains an original and a
retrained model per seed besides its method runs). :class:`WorkCost` holds
the three counts; :func:`run_cost` counts one run, and
``unlearn_core.sweeps.sweep_cost`` a whole sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearn_core.forget import ForgetSpec


@dataclass(frozen=True)
class WorkCost:
    """Model trainings a submission will do: method runs, originals and retrained references not yet cached."""

    method_runs: int = 0
    originals: int = 0
    references: int = 0

    @property
    def trainings(self) -> int:
        return self.method_runs + self.originals + self.references

    def __add__(self, other: "WorkCost") -> "WorkCost":
        return WorkCost(self.method_runs + other.method_runs, self.originals + other.originals,
                        self.references + other.references)

    def describe(self) -> str:
        """``"4 method runs + 2 originals + 2 retrained references = 8 model trainings"``."""
        parts = [f"{self.method_runs} method run{'s' * (self.method_runs != 1)}"]
        if self.originals:
            parts.append(f"{self.originals} original{'s' * (self.originals != 1)}")
        if self.references:
            parts.append(f"{self.references} retrained reference{'s' * (self.references != 1)}")
        return f"{' + '.join(parts)} = {self.trainings} model training{'s' * (self.trainings != 1)}"


def run_cost(dataset: str, model: str | None, forget: str | ForgetSpec, seed: int = 0, recipe=None,
             with_retrained: bool = True, method_runs: int = 1) -> WorkCost:
    """The cost of ``method_runs`` runs on one setting: the runs, plus its original and retrained model if uncached."""
    from unlearn_core.data import load_dataset
    from unlearn_core.training import default_recipe, is_cached

    bundle = load_dataset(dataset)
    model = model or bundle.default_model
    recipe = recipe or default_recipe(bundle.name)
    originals = 0 if is_cached("original", bundle, model, seed, recipe) else 1
    references = 0
    if with_retrained:
        spec = forget if isinstance(forget, ForgetSpec) else ForgetSpec.parse(forget)
        split = spec.resolve(bundle, seed)
        references = 0 if is_cached("retrain", bundle, model, seed, recipe, split.key()) else 1
    return WorkCost(method_runs, originals, references)


def disk_full_reason(store=None) -> str | None:
    """Why no new work fits on disk, or None: the caches are pruned first, and only what pins hold can be over.

    The checkpoint cache (``UNLEARN_CHECKPOINT_CACHE_MB``) drops its least recently used unpinned models and the
    run store (``UNLEARN_RUN_CHECKPOINT_QUOTA_MB``) its oldest unpinned run checkpoints; what is still over its
    quota after that is pinned, and new work would only add to it.
    """
    from unlearn_core.checkpoints import CheckpointCache
    from unlearn_core.settings import settings

    current = settings()
    cache = CheckpointCache()
    cache.enforce_quota()
    used = cache.total_bytes()
    if used > current.checkpoint_cache_bytes:
        return (f"the checkpoint cache holds {used / 2**20:,.0f} MiB of pinned models, over its "
                f"{current.checkpoint_cache_mb:g} MiB (UNLEARN_CHECKPOINT_CACHE_MB); new work is refused until "
                "some are unpinned")
    if store is not None:
        store.enforce_checkpoint_quota()
        used = store.checkpoint_usage()[0]
        if used > current.run_checkpoint_quota_bytes:
            return (f"pinned run checkpoints use {used / 2**20:,.0f} MiB, over the {current.run_checkpoint_quota_mb:g}"
                    " MiB quota (UNLEARN_RUN_CHECKPOINT_QUOTA_MB); unpin some (python -m unlearn_core runs unpin ID)")
    return None
