"""FT: fine-tune on the remaining data only; catastrophic forgetting does the work."""

from __future__ import annotations

import torch

from unlearn_core.methods._common import fit_classifier
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register


@register
class FineTune(UnlearningMethod):
    name = "finetune"
    title = "FT (fine-tune)"
    summary = "A few epochs of SGD on the remaining data only (spec: lr 0.01, 10 epochs)."
    params = (
        Param("lr", float, 0.01, "SGD learning rate", low=1e-5, high=1.0, log=True),
        Param("epochs", int, 10, "passes over the remaining data", low=1, high=200),
        Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=0.99),
        Param("weight_decay", float, 5e-4, "L2 weight decay", low=0.0, high=0.1),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        model = task.copy_original()
        images, labels = task.retain_data()
        optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=params["momentum"],
                                    weight_decay=params["weight_decay"])
        stats = fit_classifier(model, images, labels, task, optimizer, params["epochs"], params["batch_size"],
                               augment=task.recipe.augment, stage="fine-tune")
        return UnlearnOutput(model, stats)
