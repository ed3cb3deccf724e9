"""l1-sparse (Jia et al., NeurIPS 2023): fine-tune on the remaining data with an l1 weight penalty.

The penalty weight decays linearly from ``alpha`` to 0 over the epochs
(``alpha * (1 - (epoch - 1) / epochs)``): sparsity early, accuracy late.
"""

from __future__ import annotations

import torch.nn.functional as F

from unlearn_core.methods._common import batch_images, make_optimizer, train_steps, weight_l1
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register


def l1_weight(alpha: float, epoch: int, epochs: int) -> float:
    """The linearly decaying penalty weight of a 1-based epoch."""
    return alpha * (1.0 - (epoch - 1) / epochs)


@register
class L1Sparse(UnlearningMethod):
    name = "l1_sparse"
    title = "l1-sparse"
    summary = "Fine-tune on the remaining data with an l1 penalty on the weights whose weight decays linearly."
    params = (
        # 5e-4 over 5 epochs left 94.8% forget accuracy on mnist5k class 3.
        Param("alpha", float, 2e-3, "initial l1 penalty weight (decays linearly to 0)", low=0.0, high=1.0),
        Param("lr", float, 0.01, "SGD learning rate", low=1e-6, high=1.0, log=True),
        Param("epochs", int, 3, "passes over the remaining data", low=1, high=200),
        Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=0.99),
        Param("weight_decay", float, 5e-4, "L2 weight decay", low=0.0, high=0.1),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        model = task.copy_original()
        images, labels = task.retain_data()
        optimizer = make_optimizer("sgd", model.parameters(), params["lr"], params["momentum"],
                                   params["weight_decay"])
        generator = task.generator()
        augment = task.recipe.augment

        def penalised_loss(batch, epoch):
            ce = F.cross_entropy(model(batch_images(images, batch, task, augment, generator)),
                                 labels[batch].to(task.device))
            return ce + l1_weight(params["alpha"], epoch, params["epochs"]) * weight_l1(model)

        stats = train_steps(model, task, len(labels), params["batch_size"], params["epochs"], penalised_loss,
                            optimizer, "l1-sparse fine-tune", generator=generator)
        return UnlearnOutput(model, stats)
