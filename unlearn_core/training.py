"""Supervised training, inference helpers, and the cached original/retrained models.

The original model and the retrained reference share a recipe and the same
initial weights (both are built from the same seed); the reference simply
never sees the forget set. Both are cached on disk by a hash of everything
that determines them, so a second request loads the saved weights instead of
training again. The recipes and that key live in :mod:`unlearn_core.recipes` (no torch; re-exported here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from unlearn_core.checkpoints import CheckpointCache
from unlearn_core.data import DatasetBundle, augment_batch, to_float
from unlearn_core.device import TimedConditions, pick_device, seeded_global_rng
from unlearn_core.errors import UnlearnError
from unlearn_core.forget import ForgetSplit, validate_seed
from unlearn_core.models import UnlearnModel, build_for_dataset, count_parameters
from unlearn_core.progress import Reporter, check_finite, is_out_of_memory, oom_guard, release_cached_memory
from unlearn_core.recipes import (CACHE_VERSION, DEFAULT_RECIPES, TrainRecipe, default_recipe, is_cached,
                                  model_cache_key)

__all__ = ["CACHE_VERSION", "DEFAULT_RECIPES", "TrainRecipe", "TrainedModel", "accuracy", "default_recipe",
           "extract_features", "get_original", "get_retrained", "is_cached", "minibatches", "model_cache_key",
           "predict_logits", "train_supervised"]


def minibatches(n: int, batch_size: int, generator: torch.Generator | None = None,
                shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _batched_inference(fn, images: torch.Tensor, device, batch_size: int) -> list[torch.Tensor]:
    """Apply ``fn`` batch by batch; on out-of-memory, halve the batch and carry on (results are the same)."""
    outs, start = [], 0
    while start < len(images):
        try:
            outs.append(fn(to_float(images[start:start + batch_size]).to(device)).float().cpu())
        except Exception as error:
            if not is_out_of_memory(error) or batch_size == 1:
                raise
            release_cached_memory(device)
            batch_size = max(1, batch_size // 2)
            continue
        start += batch_size
    return outs


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, device: torch.device | None = None,
                   batch_size: int = 1024) -> torch.Tensor:
    """Logits for raw images (``uint8`` or float), in eval mode, returned on the CPU."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with oom_guard("inference", 1, device):
            outs = _batched_inference(model, images, device, batch_size)
    finally:
        model.train(was_training)
    if not outs:
        return torch.zeros(0, model.head.out_features if hasattr(model, "head") else 0)
    return torch.cat(outs)


@torch.no_grad()
def extract_features(model: UnlearnModel, images: torch.Tensor, device: torch.device | None = None,
                     batch_size: int = 1024) -> torch.Tensor:
    """Penultimate features for raw images, in eval mode, on the CPU."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with oom_guard("feature extraction", 1, device):
            outs = _batched_inference(model.features, images, device, batch_size)
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0, model.feature_dim)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device=None) -> float:
    """Top-1 accuracy in percent (NaN for an empty set)."""
    if len(labels) == 0:
        return float("nan")
    preds = predict_logits(model, images, device).argmax(1)
    return float((preds == labels.cpu()).float().mean() * 100)


def train_supervised(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, recipe: TrainRecipe,
                     device: torch.device, seed: int, reporter: Reporter | None = None,
                     augmentation: str = "none", padding: int = 0) -> dict:
    """Train with SGD + momentum and a per-step cosine schedule; returns timing and final stats."""
    reporter = reporter or Reporter(stage="train")
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    steps_per_epoch = max(1, -(-len(labels) // recipe.batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    epoch_loss = epoch_acc = float("nan")
    with seeded_global_rng(seed, device), TimedConditions(device) as timing:
        epoch_loss, epoch_acc = _train_epochs(model, images, labels, recipe, device, reporter, augmentation,
                                              padding, optimizer, scheduler, generator, loss_fn, steps_per_epoch)
    model.eval()
    return {"seconds": time.perf_counter() - started, "final_loss": epoch_loss, "final_train_acc": epoch_acc,
            "timing": timing.conditions}


def _train_epochs(model, images, labels, recipe, device, reporter, augmentation, padding, optimizer, scheduler,
                  generator, loss_fn, steps_per_epoch) -> tuple[float, float]:
    epoch_loss = epoch_acc = float("nan")
    for epoch in range(1, recipe.epochs + 1):
        total_loss, correct, seen = 0.0, 0, 0
        for step, batch in enumerate(minibatches(len(labels), recipe.batch_size, generator), start=1):
            x = to_float(images[batch]).to(device)
            y = labels[batch].to(device)
            if recipe.augment:
                x = augment_batch(x, augmentation, padding, generator)
            optimizer.zero_grad(set_to_none=True)
            with oom_guard("training", recipe.batch_size, device):
                logits = model(x)
                loss = loss_fn(logits, y)
                check_finite(loss.item(), "training")
                loss.backward()
                optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            reporter(epoch=epoch, epochs=recipe.epochs, step=step, steps=steps_per_epoch,
                     loss=total_loss / seen, accuracy=100.0 * correct / seen)
        epoch_loss, epoch_acc = total_loss / max(seen, 1), 100.0 * correct / max(seen, 1)
    return epoch_loss, epoch_acc


@dataclass
class TrainedModel:
    """A trained model with where it came from."""

    model: UnlearnModel
    key: str
    meta: dict
    from_cache: bool
    load_seconds: float

    @property
    def train_seconds(self) -> float:
        return float(self.meta.get("seconds", float("nan")))


def _train_or_load(kind: str, bundle: DatasetBundle, model_name: str, seed: int, recipe: TrainRecipe,
                   device: torch.device, indices: np.ndarray | None, split_key: str | None,
                   reporter: Reporter, cache: CheckpointCache, retime_for: dict | None = None) -> TrainedModel:
    seed = validate_seed(seed)
    key = model_cache_key(kind, bundle, model_name, seed, recipe, split_key)
    started = time.perf_counter()
    model = build_for_dataset(model_name, bundle, seed=seed)
    with cache.lock(key):
        meta = cache.load(key, model)
        if meta is not None and not _needs_retiming(meta, retime_for):
            model.to(device).eval()
            return TrainedModel(model, key, meta, True, time.perf_counter() - started)
        if meta is not None:  # trained again from the same initial weights, only to time it like for like
            model = build_for_dataset(model_name, bundle, seed=seed)
        images, labels = bundle.train_x, bundle.train_y
        if indices is not None:
            idx = torch.as_tensor(indices, dtype=torch.long)
            images, labels = images[idx], labels[idx]
        stats = train_supervised(model, images, labels, recipe, device, seed, reporter, bundle.augmentation,
                                 bundle.crop_padding)
        stats.update({"kind": kind, "dataset": bundle.name, "model": model_name, "seed": seed,
                      "recipe": recipe.as_dict(), "device": str(device), "spec": model.spec,
                      # Kept with the checkpoint so a page can show them without a pass over the test set, or
                      # without torch (checkpoints.read_meta).
                      "test_accuracy": accuracy(model, bundle.test_x, bundle.test_y, device),
                      "parameters": count_parameters(model),
                      "weight_bytes": sum(t.numel() * t.element_size() for t in model.state_dict().values())})
        cache.save(key, model, stats)
    return TrainedModel(model, key, stats, False, time.perf_counter() - started)


def _needs_retiming(meta: dict, conditions: dict | None) -> bool:
    """A cached model must be trained again for its time when it was timed on another device or thread count.

    (The load during the interval is compared after the method has run, see
    ``pipeline.build_report``; it cannot be known before.)
    """
    if conditions is None:
        return False
    recorded = meta.get("timing")
    if not recorded:
        return True
    return any(recorded.get(key) != conditions.get(key) for key in ("device", "threads"))


def get_original(bundle: DatasetBundle, model_name: str | None = None, seed: int = 0,
                 recipe: TrainRecipe | None = None, device=None, progress=None, cancel=None,
                 cache: CheckpointCache | None = None) -> TrainedModel:
    """Train (or load from the cache) the original model on the full training set."""
    model_name = model_name or bundle.default_model
    device = device if isinstance(device, torch.device) else pick_device(device)
    return _train_or_load("original", bundle, model_name, seed, recipe or default_recipe(bundle.name), device,
                          None, None, Reporter(progress, cancel, "train original"), cache or CheckpointCache())


def get_retrained(bundle: DatasetBundle, split: ForgetSplit, model_name: str | None = None, seed: int = 0,
                  recipe: TrainRecipe | None = None, device=None, progress=None, cancel=None,
                  cache: CheckpointCache | None = None, retime_for: dict | None = None) -> TrainedModel:
    """Train (or load) the reference: same recipe and initial weights, remaining data only.

    ``retime_for`` (timing conditions, see :func:`unlearn_core.device.timing_conditions`):
    when the cached reference was timed on another device or torch thread
    count, train it again so its seconds compare like for like.
    """
    if len(split.retain_idx) == 0:
        raise UnlearnError("nothing remains to retrain on")
    model_name = model_name or bundle.default_model
    device = device if isinstance(device, torch.device) else pick_device(device)
    return _train_or_load("retrain", bundle, model_name, seed, recipe or default_recipe(bundle.name), device,
                          split.retain_idx, split.key(), Reporter(progress, cancel, "retrain"),
                          cache or CheckpointCache(), retime_for)
