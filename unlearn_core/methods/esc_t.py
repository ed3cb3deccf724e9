"""ESC-T, erasing space concept with a trained mask (Lee et al., CVPR 2025).

Following the release ``KU-VGI/ESC`` (``unlearn.py``, the ``args.method == "ESC_T"`` branch of
``main``; ``models.py``: ``esc_set(..., esc_t=True)``): with ``U`` the full ``d x d`` left singular
basis of the forget samples' penultimate features ``F^T`` (as in :mod:`unlearn_core.methods.esc`),
a mask ``m in [0, 1]^{d x d}``, one entry per entry of ``U``, starts at all ones and the features the
head sees become ``P_m f`` with ``P_m = (U * m)(U * m)^T`` (elementwise product). Each step takes a
shuffled batch of forget samples, keeps those the current model still classifies correctly, and
descends ``-CE`` on them (gradient ascent on their cross-entropy) in ``m`` alone:
``m <- clip(m - lr * grad, 0, 1)``. After every epoch, training stops once no forget sample is
classified correctly. The final mask is binarised, ``b = [m > threshold]``, and ``P_b`` is applied.

The network is never trained, so the forget features are computed once (eval mode) and each step
costs one ``d x d`` product; ``P`` is folded into the head (``W <- W P``, bias unchanged), as for ESC.
Three departures from the release, all for determinism: the images are unaugmented (as in
:mod:`unlearn_core.methods.esc`); the release leaves the model in training
mode during its first epoch (BatchNorm batch statistics and dropout; from the second epoch on it is in
eval mode); and its very first step applies ``(U * m)^T (U * m)`` instead of ``(U * m)(U * m)^T``
(``esc_set`` stores the transpose when the buffer is first registered), and as the two operators are
identities at ``m = 1`` only that step's gradient differs. Here every step uses eval-mode features and
``(U * m)(U * m)^T``.

Designed for class forgetting. Defaults are the release's: ``--lr 1e-3 --epoch 50 --batch_size 64
--threshold 0.7``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register
from unlearn_core.methods.esc import forget_features
from unlearn_core.progress import check_finite
from unlearn_core.subspaces import left_singular_basis, removed_directions
from unlearn_core.training import minibatches

# Strength above which a direction counts as erased in the artifacts.
REPORT_TAU = 0.5


def masked_projection(u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``P_m = (U * m)(U * m)^T``."""
    masked = u * mask
    return masked @ masked.T


def forget_hits(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                operator: torch.Tensor) -> int:
    """How many forget samples the head classifies correctly on ``operator``-mapped features."""
    with torch.no_grad():
        logits = features @ operator.T @ weight.T + bias
        return int((logits.argmax(1) == labels).sum())


def train_mask(task: UnlearnTask, features: torch.Tensor, labels: torch.Tensor, u: torch.Tensor,
               weight: torch.Tensor, bias: torch.Tensor, lr: float, epochs: int, batch_size: int,
               model=None) -> tuple[torch.Tensor, int]:
    """ESC-T's mask training; returns the continuous mask and the number of epochs run.

    ``model``, when given and the task has an observer (unlearning curves), has
    its head set to ``W P_m`` after each step so the observer sees the current state.
    """
    reporter = task.reporter.child("esc_t mask")
    generator = task.generator(31)
    mask = torch.ones_like(u)
    steps = max(1, -(-len(labels) // batch_size))
    ran = 0
    watched = model if reporter.observer is not None else None
    for epoch in range(1, epochs + 1):
        ran = epoch
        total, seen = 0.0, 0
        for step, batch in enumerate(minibatches(len(labels), batch_size, generator), start=1):
            batch = batch.to(features.device)
            mask = mask.detach().requires_grad_(True)
            logits = features[batch] @ masked_projection(u, mask).T @ weight.T + bias
            learned = logits.argmax(1) == labels[batch]
            if bool(learned.any()):
                loss = -F.cross_entropy(logits[learned], labels[batch][learned])
                check_finite(loss.item(), "esc_t mask")
                (grad,) = torch.autograd.grad(loss, mask)
                with torch.no_grad():
                    mask = (mask - lr * grad).clamp(0.0, 1.0)
                total += loss.item() * int(learned.sum())
                seen += int(learned.sum())
            mask = mask.detach()
            if watched is not None:
                fold_head(watched, weight, masked_projection(u, mask))
            shown = total / seen if seen else float("nan")
            reporter(epoch=epoch, epochs=epochs, step=step, steps=steps, loss=shown)
            if watched is not None:
                reporter.observe(watched, epoch=epoch, epochs=epochs, step=step, steps=steps, loss=shown)
        if forget_hits(features, labels, weight, bias, masked_projection(u, mask)) == 0:
            break
    return mask.detach(), ran


def fold_head(model, weight: torch.Tensor, operator: torch.Tensor) -> None:
    """Set the head's weight to ``W T`` from the original ``W`` (not cumulatively)."""
    with torch.no_grad():
        model.head.weight.copy_((weight @ operator).to(model.head.weight.device, model.head.weight.dtype))


@register
class ESCT(UnlearningMethod):
    name = "esc_t"
    title = "ESC-T (erasing space concept, trained mask)"
    forget_kinds = ("class",)
    scope_note = "it erases the forget samples' principal feature directions, shared by their whole class"
    summary = ("Almost training-free: learn a mask over the forget features' singular basis by gradient ascent on "
               "the still-recognised forget samples, binarise it and project the head's input with it.")
    params = (
        Param("lr", float, 1e-3, "step size of the mask's gradient steps", low=1e-6, high=10.0, log=True),
        Param("epochs", int, 50, "most passes over the forget samples (stops early once none is recognised)",
              low=1, high=500),
        Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
        Param("threshold", float, 0.7, "mask entries above it are kept (1), the rest erased (0)", low=0.0,
              high=1.0),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        features, labels = forget_features(task)
        u, _ = left_singular_basis(features)
        model = task.copy_original()
        model.eval()
        work = u.device  # the task's device, or the CPU for MPS (esc.work_device)
        weight = model.head.weight.detach().to(work, torch.float64).clone()
        bias = model.head.bias.detach().to(work, torch.float64).clone() if model.head.bias is not None else \
            torch.zeros(weight.shape[0], dtype=torch.float64, device=work)
        mask, epochs_run = train_mask(task, features, labels, u, weight, bias, params["lr"], params["epochs"],
                                      params["batch_size"], model)
        binary = (mask > params["threshold"]).to(mask.dtype)
        operator = masked_projection(u, binary)
        fold_head(model, weight, operator)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.eval()
        erased, strengths = removed_directions(operator, REPORT_TAU)
        artifacts = {"feature_dim": int(u.shape[0]), "epochs_run": epochs_run,
                     "mask_kept_share": float(binary.mean()),
                     "mask_mean": float(mask.mean()),
                     "forget_hits_continuous": forget_hits(features, labels, weight, bias,
                                                           masked_projection(u, mask)),
                     "forget_hits_binary": forget_hits(features, labels, weight, bias, operator),
                     "erased_rank": int(erased.shape[1]), "erased_rank_tau": REPORT_TAU,
                     "operator_strengths": strengths.astype("float32")}
        return UnlearnOutput(model, artifacts)
