"""Helpers shared by the methods: the training loop, relabelling and distillation losses.

:func:`train_steps` is the one mini-batch loop every fine-tuning method runs
(progress, cancel, out-of-memory, non-finite loss and non-finite weight
checks); :func:`fit_classifier` is that loop with cross-entropy on hard
labels of raw images, optionally augmented.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from unlearn_core.data import to_float
from unlearn_core.errors import DivergenceError, MethodError
from unlearn_core.methods.base import UnlearnTask
from unlearn_core.progress import check_finite, oom_guard
from unlearn_core.training import minibatches

BatchLoss = Callable[[torch.Tensor, int], torch.Tensor]


def make_optimizer(name: str, parameters, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam, the two optimisers the baselines' papers use."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    raise MethodError(f"unknown optimiser {name!r}; choose sgd or adam")


def batch_images(images: torch.Tensor, batch: torch.Tensor, task: UnlearnTask, augment: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Raw ``uint8`` images of one batch as floats in [0, 1] on the task's device, optionally augmented."""
    x = to_float(images[batch]).to(task.device)
    return task.augment(x, generator) if augment else x


def train_steps(model: nn.Module, task: UnlearnTask, n: int, batch_size: int, epochs: int,
                batch_loss: BatchLoss, optimizer: torch.optim.Optimizer, stage: str, *,
                generator: torch.Generator | None = None,
                after_backward: Callable[[nn.Module], None] | None = None,
                after_step: Callable[[nn.Module], None] | None = None,
                train_mode: Callable[[nn.Module], None] | None = None) -> dict:
    """Mini-batch training over ``range(n)`` with any loss; returns ``{"final_loss": ...}``.

    ``batch_loss(batch_indices, epoch)`` returns the loss to minimise; the
    batches are a fresh shuffle of ``range(n)`` each epoch, drawn from
    ``generator`` (the task's by default). ``after_backward(model)`` edits
    gradients before the optimiser step (UNSC's projection);
    ``after_step(model)`` runs after each step (a learning-rate schedule,
    SalUn's restoring of unmasked weights); ``train_mode(model)`` sets module
    modes at the start of each epoch (e.g. BatchNorm kept in eval). Every step
    reports progress and ``reporter.observe`` (the unlearning curves). Raises
    :class:`~unlearn_core.errors.DivergenceError` on a non-finite loss or when
    the weights end non-finite, and :class:`~unlearn_core.errors.Cancelled`
    when the task is cancelled.
    """
    if n == 0:
        raise MethodError(f"{stage}: there are no samples to train on")
    reporter = task.reporter.child(stage)
    generator = generator or task.generator()
    steps = max(1, -(-n // batch_size))
    last = float("nan")
    for epoch in range(1, epochs + 1):
        model.train()
        if train_mode is not None:
            train_mode(model)
        total, seen = 0.0, 0
        for step, batch in enumerate(minibatches(n, batch_size, generator), start=1):
            optimizer.zero_grad(set_to_none=True)
            with oom_guard(stage, batch_size, task.device):
                loss = batch_loss(batch, epoch)
                check_finite(loss.item(), stage)
                loss.backward()
                if after_backward is not None:
                    after_backward(model)
                optimizer.step()
            if after_step is not None:
                after_step(model)
            total += loss.item() * len(batch)
            seen += len(batch)
            reporter(epoch=epoch, epochs=epochs, step=step, steps=steps, loss=total / seen)
            reporter.observe(model, epoch=epoch, epochs=epochs, step=step, steps=steps, loss=total / seen)
        last = total / max(seen, 1)
    check_finite_weights(model, stage)
    model.eval()
    return {"final_loss": last}


def fit_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, task: UnlearnTask,
                   optimizer: torch.optim.Optimizer, epochs: int, batch_size: int, *, augment: bool = False,
                   augment_mask: torch.Tensor | None = None, scheduler_per_step: Callable[[], object] | None = None,
                   after_backward: Callable[[nn.Module], None] | None = None,
                   train_mode: Callable[[nn.Module], None] | None = None, stage: str = "fine-tune",
                   generator_offset: int = 0) -> dict:
    """Cross-entropy on hard ``labels`` of raw ``images``, run by :func:`train_steps`.

    ``augment`` applies the data set's training augmentation (drawn from the
    same seeded generator as the batch order); ``augment_mask`` marks which
    samples get it (NatMU augments remaining data but not hybrids).
    ``scheduler_per_step()`` runs after every optimiser step;
    ``after_backward`` and ``train_mode`` are :func:`train_steps`'.
    """
    generator = task.generator(generator_offset)
    loss_fn = nn.CrossEntropyLoss()

    def cross_entropy(batch: torch.Tensor, epoch: int) -> torch.Tensor:
        x = to_float(images[batch]).to(task.device)
        if augment:
            augmented = task.augment(x, generator)
            if augment_mask is not None:
                keep = augment_mask[batch].to(task.device)[:, None, None, None]
                augmented = torch.where(keep, augmented, x)
            x = augmented
        return loss_fn(model(x), labels[batch].to(task.device))

    after_step = None if scheduler_per_step is None else (lambda _model: scheduler_per_step())
    return train_steps(model, task, len(labels), batch_size, epochs, cross_entropy, optimizer, stage,
                       generator=generator, after_backward=after_backward, after_step=after_step,
                       train_mode=train_mode)


def check_finite_weights(model: nn.Module, where: str) -> None:
    """Raise DivergenceError if a step left NaN/inf weights (the loss of the last step can still look finite)."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise DivergenceError(f"{where}: weights became NaN or infinite in {name} (diverged); "
                                  "lower the learning rate and try again")


def cycle_batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless shuffled index batches over ``range(n)`` (pairs a small set with a large one)."""
    while True:
        yield from minibatches(n, batch_size, generator)


RANDOM_LABEL_POOLS = ("all_classes", "remaining_wrong")


def random_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator, pool: str = "all_classes",
                  forgotten: tuple[int, ...] = ()) -> torch.Tensor:
    """A seeded random label for each sample of ``labels``, drawn with ``generator``.

    - ``pool="all_classes"``: uniform over all ``num_classes`` classes,
      independent of the sample, as SalUn's release draws them
      (``Classification/unlearn/RL.py``, ``RL``: ``np.random.randint(0,
      num_classes)`` over the forget set, ``torch.randint(0, num_classes)``
      per forget batch). A drawn label equals the true one with probability
      1 / num_classes and may be a forgotten class.
    - ``pool="remaining_wrong"``: uniform over the classes that are neither
      in ``forgotten`` nor the sample's own, so a label is always wrong and
      never teaches a forgotten class back (UNSC's random-label ablation).
    """
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    if pool == "all_classes":
        return torch.randint(0, num_classes, labels.shape, generator=generator)
    if pool != "remaining_wrong":
        raise MethodError(f"unknown random-label pool {pool!r}; choose {' or '.join(RANDOM_LABEL_POOLS)}")
    allowed = torch.ones(len(labels), num_classes, dtype=torch.bool)
    if forgotten:
        allowed[:, list(forgotten)] = False
    allowed[torch.arange(len(labels)), labels] = False
    if len(labels) and not bool(allowed.any(1).all()):
        raise MethodError("random wrong labels need at least one remaining class other than a sample's own")
    if len(labels) == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.multinomial(allowed.float(), 1, generator=generator).squeeze(1)


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened outputs, scaled by T^2, averaged over the batch."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="batchmean") * temperature ** 2


def weight_l1(model: nn.Module) -> torch.Tensor:
    """Sum of absolute values of every parameter."""
    return sum(p.abs().sum() for p in model.parameters())
