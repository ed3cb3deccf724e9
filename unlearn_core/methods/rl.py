"""RL (random labels, Amnesiac): relabel each forget sample with a random wrong class and fine-tune.

Training runs on the remaining data plus the relabelled forget data. For
class forgetting the random labels come from the remaining classes.
"""

from __future__ import annotations

import torch

from unlearn_core.methods._common import fit_classifier, make_optimizer, random_wrong_labels
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register


@register
class RandomLabels(UnlearningMethod):
    name = "rl"
    title = "RL (random labels)"
    summary = "Give every forget sample a random wrong label, then fine-tune on remaining + relabelled forget data."
    params = (
        Param("lr", float, 0.01, "SGD learning rate", low=1e-6, high=1.0, log=True),
        Param("epochs", int, 3, "passes over remaining + forget data", low=1, high=100),
        Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=0.99),
        Param("weight_decay", float, 5e-4, "L2 weight decay", low=0.0, high=0.1),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        model = task.copy_original()
        images, labels = relabelled_training_set(task)
        optimizer = make_optimizer("sgd", model.parameters(), params["lr"], params["momentum"],
                                   params["weight_decay"])
        stats = fit_classifier(model, images, labels, task, optimizer, params["epochs"], params["batch_size"],
                               augment=task.recipe.augment, stage="random labels")
        return UnlearnOutput(model, stats)


def relabelled_training_set(task: UnlearnTask) -> tuple[torch.Tensor, torch.Tensor]:
    """Remaining data with true labels plus forget data with random wrong labels (shared with SalUn)."""
    retain_x, retain_y = task.retain_data()
    forget_x, forget_y = task.forget_data()
    return torch.cat([retain_x, forget_x]), torch.cat([retain_y, random_wrong_labels(task, forget_y)])
