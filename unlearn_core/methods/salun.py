"""SalUn (Fan et al., ICLR 2024): random-label unlearning restricted to the most salient weights.

The saliency of a weight is the magnitude of the forget loss's gradient,
accumulated over the whole forget set on the original model. The top
``mask_fraction`` of all weights (one global threshold) form the mask; RL then
runs with only masked weights moving, its random labels drawn from all
classes as in SalUn's release (``Classification/unlearn/RL.py``, ``RL``;
see :func:`unlearn_core.methods.rl.relabelled_training_set`). Unmasked weights stay bit-identical:
their gradients are zeroed, weight decay is applied by hand to masked weights
only (so the optimiser's own decay and momentum never see them), they are
restored after every step as a last guard. BatchNorm layers stay in train
mode, as in SalUn's release: their running statistics are buffers, not
weights the mask selects, and they follow the relabelled training data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearn_core.data import to_float
from unlearn_core.methods._common import fit_classifier
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register
from unlearn_core.methods.rl import LABEL_POOL_PARAM, relabelled_training_set
from unlearn_core.training import minibatches


def saliency_mask(task: UnlearnTask, fraction: float, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Boolean mask per parameter: the top ``fraction`` of weights by |accumulated forget-loss gradient|."""
    model = task.copy_original()
    model.eval()
    images, labels = task.forget_data()
    model.zero_grad(set_to_none=True)
    for batch in minibatches(len(labels), batch_size, shuffle=False):
        x = to_float(images[batch]).to(task.device)
        # Summed (not averaged) over batches so every forget sample counts once, whatever the batching.
        F.cross_entropy(model(x), labels[batch].to(task.device), reduction="sum").backward()
    saliency = {name: p.grad.abs() if p.grad is not None else torch.zeros_like(p)
                for name, p in model.named_parameters()}
    flat = torch.cat([s.flatten() for s in saliency.values()])
    keep = int(round(fraction * flat.numel()))
    if keep <= 0:
        return {name: torch.zeros_like(s, dtype=torch.bool) for name, s in saliency.items()}
    # Exactly `keep` weights, ties broken by position, so the mask size never depends on ties at the threshold.
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, keep, sorted=False).indices] = True
    masks, start = {}, 0
    for name, s in saliency.items():
        masks[name] = chosen[start:start + s.numel()].view_as(s)
        start += s.numel()
    return masks


@register
class SalUn(UnlearningMethod):
    name = "salun"
    title = "SalUn (saliency unlearning)"
    summary = "Random-label fine-tuning in which only the weights most salient to the forget loss may move."
    params = (
        Param("mask_fraction", float, 0.5, "share of weights (by forget-gradient saliency) allowed to move",
              low=0.0, high=1.0),
        Param("lr", float, 0.01, "SGD learning rate", low=1e-6, high=1.0, log=True),
        Param("epochs", int, 3, "passes over remaining + relabelled forget data", low=1, high=100),
        Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=0.99),
        Param("weight_decay", float, 5e-4, "L2 weight decay (masked weights only)", low=0.0, high=0.1),
        LABEL_POOL_PARAM,
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        masks = saliency_mask(task, params["mask_fraction"])
        model = task.copy_original()
        named = dict(model.named_parameters())
        frozen_values = {name: named[name].detach().clone() for name in masks}
        weight_decay = params["weight_decay"]

        def masked_gradients(m):
            for name, p in named.items():
                if p.grad is None:
                    continue
                if weight_decay:
                    p.grad.add_(p.detach(), alpha=weight_decay)
                p.grad.mul_(masks[name])

        @torch.no_grad()
        def restore_unmasked():
            for name, p in named.items():
                p.copy_(torch.where(masks[name], p, frozen_values[name]))

        images, labels = relabelled_training_set(task, params["label_pool"])
        optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=params["momentum"],
                                    weight_decay=0.0)
        stats = fit_classifier(model, images, labels, task, optimizer, params["epochs"], params["batch_size"],
                               augment=task.recipe.augment, after_backward=masked_gradients,
                               stage="salun",
                               scheduler_per_step=restore_unmasked)  # runs after every optimiser step
        masked = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        return UnlearnOutput(model, {**stats, "masked_weights": masked, "total_weights": total})
