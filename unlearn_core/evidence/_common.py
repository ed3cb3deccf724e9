"""Helpers the evidence modules share: seeded subsets, indexing, eval-mode logits and accuracy."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unlearn_core.data import to_float
from unlearn_core.metrics import accuracy_percent


def _subsample(indices: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) <= limit:
        return indices
    return np.sort(rng.choice(indices, size=limit, replace=False))


def _take(images: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
    return images[torch.as_tensor(indices, dtype=torch.long)]


@torch.no_grad()
def _eval_logits(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Logits in eval mode, restoring every module's own mode afterwards.

    ``predict_logits`` restores only the top-level mode, which would switch a
    method's frozen BatchNorm layers back to training in the middle of an
    epoch; curves are read mid-training, so each module keeps its mode here.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        outs = [model(to_float(images[start:start + batch_size]).to(device)).float().cpu()
                for start in range(0, len(images), batch_size)]
    finally:
        for module, mode in modes:
            module.training = mode
    return torch.cat(outs) if outs else torch.zeros(0, 0)


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device) -> float:
    return accuracy_percent(_eval_logits(model, images, device).argmax(1).numpy(), labels.numpy())
