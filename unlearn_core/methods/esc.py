"""ESC, erasing space concept (Lee, Park, Jeon, Hwang, Park, CVPR 2025): no training, one projection.

Following the release ``KU-VGI/ESC`` (``unlearn.py``, the ``args.method == "ESC"`` branch of ``main``;
``models.py``: ``AllCNN.forward`` and ``esc_set``): the penultimate features ``F`` (``n x d``, the
head's input, the release's ``pre_logits``) of every forget training sample are decomposed,
``F^T = U S V^T`` (no centring); the top ``k = int(d p / 100)`` left singular vectors ``U_k`` are the
forget samples' principal directions, and the model's features become ``(I - U_k U_k^T) f`` before
the head: the release keeps ``u_p = U[:, k:]`` and applies ``u_p u_p^T``, the same projection when
``U`` is the full ``d x d`` basis.

Here the projection is folded into the head, ``W <- W (I - U_k U_k^T)`` with the bias unchanged, which
gives the same logits; ``features()`` therefore still returns the unprojected representation (what the
release's backbone computes before its ESC buffer), so a probe on features sees the backbone as ESC
leaves it. ``U`` is the full ``d x d`` basis also when there are fewer forget samples than feature
dimensions (the release always has more: 5,000 or 500 forget samples for 96 to 768 features). The release
reads the forget samples through its training loader, with the CIFAR training augmentation (random horizontal
flips); here the features are those of the unaugmented images, so the basis does not depend on a random draw.

Designed for class forgetting (the release's ``--forget_class`` takes one or more classes).
Default ``p = 1.5`` (percent of the feature dimension) is the release's.
"""

from __future__ import annotations

import torch

from unlearn_core.errors import MethodError
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register
from unlearn_core.subspaces import esc_prune_count, left_singular_basis
from unlearn_core.training import extract_features


def work_device(device: torch.device) -> torch.device:
    """Where the float64 linear algebra runs: the task's device, or the CPU for MPS (no float64 there)."""
    return torch.device("cpu") if device.type == "mps" else device


def forget_features(task: UnlearnTask) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (``n x d``, float64, on :func:`work_device`) and labels of every forget sample."""
    if len(task.split.forget_idx) == 0:
        raise MethodError("the forget set is empty")
    images, labels = task.forget_data()
    features = extract_features(task.frozen_original(), images, task.device)
    work = work_device(task.device)
    return features.to(work, torch.float64), labels.to(work)


def fold_into_head(model, operator: torch.Tensor) -> None:
    """Replace the head's weight ``W`` by ``W T`` so that ``head(f) = W T f + b`` (float64 on ``T``'s device)."""
    with torch.no_grad():
        weight = model.head.weight
        product = weight.detach().to(operator.device, torch.float64) @ operator.double()
        weight.copy_(product.to(weight.device, weight.dtype))


@register
class ESC(UnlearningMethod):
    name = "esc"
    title = "ESC (erasing space concept)"
    forget_kinds = ("class",)
    scope_note = "it erases the forget samples' principal feature directions, shared by their whole class"
    summary = ("No training: remove the forget samples' top principal directions (p percent of the feature "
               "dimensions) from the features the head sees.")
    params = (
        Param("p", float, 1.5, "percent of the feature dimensions erased: the top int(d p / 100) left singular "
              "vectors of the forget features", low=0.0, high=100.0),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        features, _ = forget_features(task)
        u, sigma = left_singular_basis(features)
        dim = u.shape[0]
        k = esc_prune_count(dim, params["p"])
        erased = u[:, :k]
        projection = torch.eye(dim, dtype=u.dtype, device=u.device) - erased @ erased.T
        model = task.copy_original()
        fold_into_head(model, projection)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.eval()
        energy = sigma ** 2
        total = float(energy.sum())
        artifacts = {"feature_dim": dim, "erased_rank": k, "forget_samples": int(features.shape[0]),
                     "forget_energy_erased": float(energy[:k].sum()) / total if total > 0 else 0.0,
                     "forget_spectrum": (energy / total if total > 0 else energy).cpu().float().numpy()}
        return UnlearnOutput(model, artifacts)
