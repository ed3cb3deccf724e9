"""RL (random labels, Amnesiac): relabel each forget sample with a random class and fine-tune.

Training runs on the remaining data plus the relabelled forget data, one
relabelling for the whole run, as SalUn's release does on CIFAR-100 and
TinyImageNet (``Classification/unlearn/RL.py``, ``RL``: the forget set's
targets replaced by ``np.random.randint(0, num_classes)``, then trained
concatenated with the remaining set). By default the labels come from all
classes, as in that release, so a label can be the true class (probability
1 / num_classes) or a forgotten class; ``label_pool="remaining_wrong"``
draws only wrong labels among the remaining classes.
"""

from __future__ import annotations

import torch

from unlearn_core.methods._common import RANDOM_LABEL_POOLS, fit_classifier, make_optimizer, random_labels
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register


LABEL_POOL_PARAM = Param(
    "label_pool", str, "all_classes",
    "where the forget samples' random labels come from: 'all_classes' (SalUn's release: any class, possibly the "
    "true one) or 'remaining_wrong' (a remaining class other than the sample's own)", choices=RANDOM_LABEL_POOLS)


@register
class RandomLabels(UnlearningMethod):
    name = "rl"
    title = "RL (random labels)"
    summary = "Give every forget sample a random label, then fine-tune on remaining + relabelled forget data."
    params = (
        Param("lr", float, 0.01, "SGD learning rate", low=1e-6, high=1.0, log=True),
        Param("epochs", int, 3, "passes over remaining + forget data", low=1, high=100),
        Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=0.99),
        Param("weight_decay", float, 5e-4, "L2 weight decay", low=0.0, high=0.1),
        LABEL_POOL_PARAM,
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        model = task.copy_original()
        images, labels = relabelled_training_set(task, params["label_pool"])
        optimizer = make_optimizer("sgd", model.parameters(), params["lr"], params["momentum"],
                                   params["weight_decay"])
        stats = fit_classifier(model, images, labels, task, optimizer, params["epochs"], params["batch_size"],
                               augment=task.recipe.augment, stage="random labels")
        return UnlearnOutput(model, stats)


def relabelled_training_set(task: UnlearnTask, pool: str = "all_classes") -> tuple[torch.Tensor, torch.Tensor]:
    """Remaining data with true labels plus forget data with :func:`random_labels` from ``pool`` (shared with SalUn).

    The labels are drawn once per run with the task's generator (offset 17).
    """
    retain_x, retain_y = task.retain_data()
    forget_x, forget_y = task.forget_data()
    drawn = random_labels(forget_y, task.bundle.num_classes, task.generator(17), pool,
                          tuple(task.split.forgotten_classes))
    return torch.cat([retain_x, forget_x]), torch.cat([retain_y, drawn])
