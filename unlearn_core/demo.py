"""A demo that is ready when the class is: the original and every single-class retrained reference, cached.

:func:`prepare_demo` trains (or finds in the checkpoint cache) the original
model of a data set, model and seed and the retrained reference of each
single-class forget set ``class:0`` ... ``class:C-1``, one after another.
Each model is saved to the keyed checkpoint cache as soon as it is trained,
so a run that is stopped resumes where it stopped, and a second run trains
nothing. With each reference it stores that setting's before map and retrained
panel (:func:`unlearn_core.embeddings.run_maps` without a run, PCA and UMAP), so
a run's first map on Embeddings only places its own model. A demo run on a
prepared setting then waits only for its method.
:func:`demo_status` says how many of those models the cache holds without
loading or training any of them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from unlearn_core.progress import ProgressEvent, ProgressFn


@dataclass
class DemoStatus:
    """Which models of a demo setting are cached: the original, and the reference per forgotten class."""

    dataset: str
    model: str
    seed: int
    original: bool
    references: dict[int, bool] = field(default_factory=dict)

    @property
    def ready(self) -> int:
        """How many single-class references are cached."""
        return sum(self.references.values())

    @property
    def total(self) -> int:
        return len(self.references)

    @property
    def complete(self) -> bool:
        return self.original and self.ready == self.total

    def line(self) -> str:
        """``ready: 7 of 10 references cached (original cached)``."""
        return (f"ready: {self.ready} of {self.total} references cached "
                f"(original {'cached' if self.original else 'not trained yet'})")


def demo_forgets(num_classes: int) -> list[str]:
    """The single-class forget sets of a data set with ``num_classes`` classes."""
    return [f"class:{c}" for c in range(num_classes)]


def _resolve(dataset: str, model: str | None, seed: int, recipe, tensors: bool):
    """The data set (as tensors, or as arrays when only keys are needed), model name, checked seed and recipe."""
    from unlearn_core import data
    from unlearn_core.forget import validate_seed
    from unlearn_core.recipes import default_recipe

    bundle = data.load_dataset(dataset) if tensors else data.load_arrays(dataset)  # the tensors import torch
    return bundle, model or data.default_model_for(dataset), validate_seed(int(seed)), recipe or default_recipe(bundle.name)


def demo_status(dataset: str, model: str | None = None, seed: int = 0, recipe=None) -> DemoStatus:
    """The demo setting's cached models, looked up by their cache keys (nothing is loaded or trained, and torch is
    not imported)."""
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.recipes import is_cached

    arrays, model_name, seed, recipe = _resolve(dataset, model, seed, recipe, tensors=False)
    original = is_cached("original", arrays, model_name, seed, recipe)
    references = {}
    for cls, forget in enumerate(demo_forgets(arrays.num_classes)):
        split = ForgetSpec.parse(forget).resolve(arrays, seed)
        references[cls] = is_cached("retrain", arrays, model_name, seed, recipe, split.key())
    return DemoStatus(arrays.name, model_name, seed, original, references)


def prepare_demo(dataset: str, model: str | None = None, seed: int = 0, device=None, recipe=None,
                 progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                 maps: tuple[str, ...] | None = None) -> DemoStatus:
    """Train (or find cached) the original and every single-class retrained reference; returns the status.

    ``maps``: the reducers whose before map and retrained panel are stored per setting (default
    :func:`~unlearn_core.umapfit.default_reducers`; ``()`` for none); maps already stored are looked up, not recomputed.

    Models already cached are skipped; each new one is in the cache as soon as it is trained. Progress comes
    as :class:`~unlearn_core.progress.ProgressEvent` (stage ``prepare demo``: ``step`` of ``steps`` models,
    then the training's own events); ``cancel`` stops between and inside trainings (``Cancelled``).
    """
    from unlearn_core.device import pick_device
    from unlearn_core.errors import Cancelled
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.training import get_original, get_retrained

    bundle, model_name, seed, recipe = _resolve(dataset, model, seed, recipe, tensors=True)
    device = device if hasattr(device, "type") else pick_device(device)
    forgets = demo_forgets(bundle.num_classes)
    steps = len(forgets) + 1

    def announce(step: int, message: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("preparing the demo was cancelled")
        if progress is not None:
            progress(ProgressEvent(stage="prepare demo", step=step, steps=steps, message=message))

    if maps is None:
        from unlearn_core.umapfit import default_reducers

        maps = default_reducers()
    if maps:
        from unlearn_core.embeddings import EmbeddingCache, run_maps
        from unlearn_core.pipeline import Setup

        cache = EmbeddingCache()
    announce(0, f"original {model_name} on {bundle.name}")
    original = get_original(bundle, model_name, seed, recipe, device, progress, cancel)
    for i, forget in enumerate(forgets, start=1):
        announce(i, f"retrained reference for {forget} ({i} of {len(forgets)})")
        split = ForgetSpec.parse(forget).resolve(bundle, seed)
        retrained = get_retrained(bundle, split, model_name, seed, recipe, device, progress, cancel)
        if maps:
            if progress is not None:
                progress(ProgressEvent(stage="prepare demo", step=i, steps=steps,
                                       message=f"maps for {forget} ({', '.join(m.upper() for m in maps)})"))
            setup = Setup(bundle, split, model_name, seed, device, recipe, original, retrained)
            run_maps(setup, None, None, cache, tuple(maps))
    announce(steps, "every reference is cached")
    return demo_status(bundle.name, model_name, seed, recipe)
