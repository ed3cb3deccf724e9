"""SCRUB (Kurmanji et al., NeurIPS 2023): a student moves away from its teacher on forget data only.

The teacher is the original model; the student starts as a copy. Each epoch,
for the first ``max_epochs`` epochs, max-steps over the forget batches
*increase* KL(teacher || student); then min-steps over the remaining batches
minimise ``gamma * CE + alpha * KL(teacher || student)``. KL uses temperature
T and is scaled by T^2 (the release's ``DistillKL``).

Defaults: the release's **large-scale** configuration, all of it
(``meghdadk/SCRUB``, ``large_scale_unlearning.ipynb``, the "SCRUB
Forgetting" cell): SGD with lr 5e-4, momentum 0.9, weight decay 5e-4;
T = 4; alpha = 0.001; gamma = 0.99; 2 max-step epochs out of 3; remaining
batches of 128 (``sgda_batch_size``) and forget batches of 32
(``del_batch_size``); the learning rate multiplied by 0.1 after epoch 3,
again after 5 and after 9 (``lr_decay_epochs``, applied by
``thirdparty/repdistiller/helper/util.py``, ``adjust_learning_rate``), which
leaves the default 3 epochs at 5e-4. (That notebook's loop iterates loaders
built earlier with batches of 256 and 512; with forget batches of 512 SCRUB
makes one max-step per epoch on mnist5k's class-3 forget set and leaves
forget accuracy at 99 %.) The small-scale configuration
(``small_scale_unlearning.ipynb``: Adam, weight decay 0.1, T = 2, alpha 0.5,
gamma 1, 10 epochs) is not mixed in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearn_core.errors import MethodError
from unlearn_core.methods._common import batch_images, check_finite_weights, distill_kl, make_optimizer
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register
from unlearn_core.progress import check_finite
from unlearn_core.training import minibatches


LR_DECAY_EPOCHS = (3, 5, 9)


def scrub_learning_rate(lr: float, epoch: int, decay_rate: float) -> float:
    """The release's step schedule: ``lr * decay_rate ** #{e in (3, 5, 9): epoch > e}`` (epochs count from 1).

    Source: SCRUB's release, ``thirdparty/repdistiller/helper/util.py``,
    ``adjust_learning_rate`` with ``lr_decay_epochs=[3, 5, 9]``.
    """
    return lr * decay_rate ** sum(epoch > e for e in LR_DECAY_EPOCHS)


@register
class Scrub(UnlearningMethod):
    name = "scrub"
    title = "SCRUB"
    summary = "Student-teacher: max-steps push the student from the teacher on forget data, min-steps keep it " \
              "close (CE + KL) on remaining data."
    params = (
        Param("lr", float, 5e-4, "SGD learning rate (5e-3 diverges on mnist5k)", low=1e-6, high=1.0, log=True),
        Param("epochs", int, 3, "epochs (each: optional max-steps, then min-steps)", low=1, high=100),
        Param("max_epochs", int, 2, "how many of the first epochs include max-steps", low=0, high=100),
        Param("temperature", float, 4.0, "distillation temperature T", low=0.1, high=20.0),
        Param("alpha", float, 0.001, "weight of the KL term in min-steps", low=0.0, high=10.0),
        Param("gamma", float, 0.99, "weight of the CE term in min-steps", low=0.0, high=10.0),
        Param("batch_size", int, 128, "remaining-data mini-batch size", low=1, high=4096),
        Param("forget_batch_size", int, 32, "forget-data mini-batch size", low=1, high=4096),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=0.99),
        Param("weight_decay", float, 5e-4, "L2 weight decay", low=0.0, high=0.1),
        Param("lr_decay_rate", float, 0.1, "learning rate x this after epoch 3, again after 5 and after 9 "
              "(1 = constant)", low=0.0, high=1.0),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        teacher = task.frozen_original()
        student = task.copy_original()
        retain_x, retain_y = task.retain_data()
        forget_x, forget_y = task.forget_data()
        if len(retain_y) == 0 or len(forget_y) == 0:
            raise MethodError("SCRUB needs both forget and remaining samples")
        optimizer = make_optimizer("sgd", student.parameters(), params["lr"], params["momentum"],
                                   params["weight_decay"])
        generator = task.generator()
        temperature, augment = params["temperature"], task.recipe.augment
        epochs = params["epochs"]
        max_reporter, min_reporter = task.reporter.child("scrub max-steps"), task.reporter.child("scrub min-steps")
        history = []

        def step(loss, where):
            check_finite(loss.item(), where)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.item()

        for epoch in range(1, epochs + 1):
            lr = scrub_learning_rate(params["lr"], epoch, params["lr_decay_rate"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            student.train()
            record = {"epoch": epoch, "lr": lr}
            if epoch <= params["max_epochs"]:
                steps = -(-len(forget_y) // params["forget_batch_size"])
                total = 0.0
                for i, batch in enumerate(minibatches(len(forget_y), params["forget_batch_size"], generator), 1):
                    x = batch_images(forget_x, batch, task)
                    with torch.no_grad():
                        teacher_logits = teacher(x)
                    total += -step(-distill_kl(student(x), teacher_logits, temperature), "scrub max-step")
                    max_reporter(epoch=epoch, epochs=epochs, step=i, steps=steps, loss=total / i)
                    max_reporter.observe(student, epoch=epoch, epochs=epochs, step=i, steps=steps, loss=total / i)
                record["forget_kl"] = total / max(steps, 1)
            steps = -(-len(retain_y) // params["batch_size"])
            total = 0.0
            for i, batch in enumerate(minibatches(len(retain_y), params["batch_size"], generator), 1):
                x = batch_images(retain_x, batch, task, augment, generator)
                with torch.no_grad():
                    teacher_logits = teacher(x)
                logits = student(x)
                loss = params["gamma"] * F.cross_entropy(logits, retain_y[batch].to(task.device)) \
                    + params["alpha"] * distill_kl(logits, teacher_logits, temperature)
                total += step(loss, "scrub min-step")
                min_reporter(epoch=epoch, epochs=epochs, step=i, steps=steps, loss=total / i)
                min_reporter.observe(student, epoch=epoch, epochs=epochs, step=i, steps=steps, loss=total / i)
            record["retain_loss"] = total / max(steps, 1)
            history.append(record)
        check_finite_weights(student, "scrub")
        student.eval()
        return UnlearnOutput(student, {"history": history})
