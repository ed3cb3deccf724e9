"""How the original and the retrained reference are trained, and the key they are cached under (no torch).

A model's weights are determined by its kind, data set, architecture, seed, recipe and forget split;
:func:`model_cache_key` hashes exactly those, so whether a model is cached (:func:`is_cached`) is a file lookup a
page can make before torch is imported. :mod:`unlearn_core.training` trains and loads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from unlearn_core.checkpoints import CheckpointCache, cache_key
from unlearn_core.forget import validate_seed

if TYPE_CHECKING:
    from unlearn_core.data import DatasetArrays, DatasetBundle

CACHE_VERSION = 2  # 2: private-generator initial weights, seeded dropout


@dataclass(frozen=True)
class TrainRecipe:
    """How an original (and retrained) model is trained: SGD with a cosine schedule."""

    epochs: int = 15
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULT_RECIPES: dict[str, TrainRecipe] = {
    "mnist5k": TrainRecipe(epochs=15, batch_size=64, lr=0.05),
    "digits": TrainRecipe(epochs=40, batch_size=64, lr=0.05, augment=False),
    "mnist": TrainRecipe(epochs=10, batch_size=128, lr=0.05),
    "fashion_mnist": TrainRecipe(epochs=20, batch_size=128, lr=0.05),
    "cifar10": TrainRecipe(epochs=60, batch_size=128, lr=0.1),
    "cifar100": TrainRecipe(epochs=80, batch_size=128, lr=0.1),
    "cifar20": TrainRecipe(epochs=80, batch_size=128, lr=0.1),
    "svhn": TrainRecipe(epochs=30, batch_size=128, lr=0.05),
}


def default_recipe(dataset: str, **overrides) -> TrainRecipe:
    """The default recipe for a data set, with optional field overrides."""
    recipe = DEFAULT_RECIPES.get(dataset, TrainRecipe(epochs=30, batch_size=64, lr=0.05))
    return replace(recipe, **overrides) if overrides else recipe


def model_cache_key(kind: str, bundle: DatasetBundle | DatasetArrays, model_name: str, seed: int,
                    recipe: TrainRecipe, split_key: str | None = None) -> str:
    """The checkpoint-cache key of a trained model: everything that determines its weights.

    ``kind`` is ``"original"`` (``split_key`` None) or ``"retrain"`` (``split_key`` the forget split's key).
    ``bundle`` is either level of :mod:`unlearn_core.data` (only its name and training-set size enter the key).
    """
    return cache_key({"v": CACHE_VERSION, "kind": kind, "dataset": bundle.name, "model": model_name, "seed": seed,
                      "recipe": recipe.as_dict(), "forget": split_key, "n_train": int(len(bundle.train_y))})


def is_cached(kind: str, bundle: DatasetBundle | DatasetArrays, model_name: str, seed: int,
              recipe: TrainRecipe | None = None, split_key: str | None = None,
              cache: CheckpointCache | None = None) -> bool:
    """Whether that model is in the checkpoint cache (so getting it costs a load, not a training)."""
    recipe = recipe or default_recipe(bundle.name)
    key = model_cache_key(kind, bundle, model_name, validate_seed(seed), recipe, split_key)
    return (cache or CheckpointCache()).path_for(key).exists()
