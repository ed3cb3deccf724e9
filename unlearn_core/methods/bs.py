"""BS, boundary shrink (Chen et al., CVPR 2023): move each forget sample to its nearest wrong class.

An FGSM step of size ``bound`` in pixel space [0, 1] on the *original* model
finds each forget sample's neighbouring class across the decision boundary;
the model is then fine-tuned on the (clean) forget samples toward those
labels. When the adversarial image still lands in the true class, the
highest-scoring other class at that point is used, so the label is always wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearn_core.data import to_float
from unlearn_core.methods._common import batch_images, make_optimizer, train_steps
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register


def neighbour_labels(task: UnlearnTask, images: torch.Tensor, labels: torch.Tensor, bound: float,
                     batch_size: int = 256) -> torch.Tensor:
    """FGSM neighbour label of each sample on the original model (never the true label)."""
    original = task.frozen_original()
    out = []
    for start in range(0, len(labels), batch_size):
        x = to_float(images[start:start + batch_size]).to(task.device).requires_grad_(True)
        y = labels[start:start + batch_size].to(task.device)
        loss = F.cross_entropy(original(x), y)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            adversarial = (x + bound * grad.sign()).clamp(0.0, 1.0)
            logits = original(adversarial)
            logits[torch.arange(len(y)), y] = float("-inf")
            out.append(logits.argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@register
class BoundaryShrink(UnlearningMethod):
    name = "bs"
    title = "BS (boundary shrink)"
    summary = "FGSM on the original model finds each forget sample's nearest wrong class; fine-tune toward it."
    params = (
        Param("bound", float, 0.1, "FGSM step size in pixel space [0, 1]", low=0.0, high=1.0),
        Param("lr", float, 1e-3, "SGD learning rate", low=1e-7, high=1.0, log=True),
        Param("epochs", int, 5, "passes over the forget set", low=1, high=100),
        Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=0.99),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        images, labels = task.forget_data()
        targets = neighbour_labels(task, images, labels, params["bound"])
        model = task.copy_original()
        optimizer = make_optimizer("sgd", model.parameters(), params["lr"], params["momentum"])

        def shrink_loss(batch, _epoch):
            return F.cross_entropy(model(batch_images(images, batch, task)), targets[batch].to(task.device))

        stats = train_steps(model, task, len(labels), params["batch_size"], params["epochs"], shrink_loss,
                            optimizer, "boundary shrink")
        counts = torch.bincount(targets, minlength=task.bundle.num_classes).tolist()
        return UnlearnOutput(model, {**stats, "neighbour_label_counts": counts})
