"""GA (NegGrad): gradient ascent on the forget samples' cross-entropy.

Fast and unstable: it pushes the forget loss up without anything holding the
rest of the model in place, so it tends to over-unlearn. A diverging loss
raises :class:`~unlearn_core.errors.DivergenceError`.
"""

from __future__ import annotations

import torch.nn.functional as F

from unlearn_core.methods._common import batch_images, make_optimizer, train_steps
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register


@register
class GradientAscent(UnlearningMethod):
    name = "ga"
    title = "GA (gradient ascent / NegGrad)"
    summary = "Maximise the cross-entropy of the forget samples for a few epochs. Fast; tends to over-unlearn."
    params = (
        Param("lr", float, 2e-3, "learning rate (1e-3 barely forgets on mnist5k, 3e-3 diverges)", low=1e-7, high=0.1,
              log=True, sweep=(1.4e-3, 5.6e-3)),
        Param("epochs", int, 5, "passes over the forget set", low=1, high=100, sweep=(2, 8)),
        Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
        Param("optimizer", str, "sgd", "optimiser", choices=("sgd", "adam")),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=0.99),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        model = task.copy_original()
        images, labels = task.forget_data()
        optimizer = make_optimizer(params["optimizer"], model.parameters(), params["lr"], params["momentum"])

        def ascent_loss(batch, _epoch):
            return -F.cross_entropy(model(batch_images(images, batch, task)), labels[batch].to(task.device))

        stats = train_steps(model, task, len(labels), params["batch_size"], params["epochs"], ascent_loss,
                            optimizer, "gradient ascent")
        return UnlearnOutput(model, stats)
