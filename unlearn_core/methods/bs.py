"""BS, boundary shrink (Chen et al., "Boundary Unlearning", CVPR 2023).

Each forget sample gets a label from the *original* model's prediction on an
FGSM-perturbed copy (one signed-gradient step of size ``bound`` on the
cross-entropy of its true label, in pixel space [0, 1], clipped to [0, 1]
and rounded to the 1/255 grid of an 8-bit image, as the reference's
``FGSM_perturb`` and ``discretize`` do in SalUn's release,
``Classification/unlearn/boundary_sh.py``); the model is then
fine-tuned on the clean forget samples toward those labels. As in the
reference (and the SalUn and UNSC releases), the prediction is taken as it
is: when the perturbed copy still lands in the true class, the label stays the
true class and that sample is not pushed anywhere. So BS forgets only as much
as one FGSM step crosses the boundary; the variant that always picks a wrong
class is registered apart as ``bs_nearest_wrong``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearn_core.data import to_float
from unlearn_core.methods._common import batch_images, make_optimizer, train_steps
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register


def fgsm_copy(model, x: torch.Tensor, y: torch.Tensor, bound: float) -> torch.Tensor:
    """One FGSM step on images ``x`` in [0, 1]: round(255 * clip(x + bound * sign(grad_x CE(model(x), y)), 0, 1)) / 255.

    The rounding puts the copy back on the 8-bit grid the data come from
    (:func:`unlearn_core.data.to_float` divides ``uint8`` pixels by 255;
    the models normalise inside), as ``FGSM_perturb`` + ``discretize`` in
    SalUn's release of boundary shrink (``boundary_sh.py``). ``torch.round``
    rounds halves to even, as there.
    """
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    with torch.no_grad():
        return torch.round((x + bound * grad.sign()).clamp(0.0, 1.0) * 255.0) / 255.0


def neighbour_labels(task: UnlearnTask, images: torch.Tensor, labels: torch.Tensor, bound: float,
                     exclude_true: bool = False, batch_size: int = 256) -> torch.Tensor:
    """The original model's prediction on each sample's FGSM copy (:func:`fgsm_copy`).

    With ``exclude_true`` the true class's logit is masked first, so the label
    is always a wrong class (the ``bs_nearest_wrong`` variant, not the reference).
    """
    original = task.frozen_original()
    out = []
    for start in range(0, len(labels), batch_size):
        x = to_float(images[start:start + batch_size]).to(task.device)
        y = labels[start:start + batch_size].to(task.device)
        adversarial = fgsm_copy(original, x, y, bound)
        with torch.no_grad():
            logits = original(adversarial)
            if exclude_true:
                logits[torch.arange(len(y)), y] = float("-inf")
            out.append(logits.argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


BS_PARAMS = (
    Param("bound", float, 0.1, "FGSM step size in pixel space [0, 1]", low=0.0, high=1.0),
    Param("lr", float, 1e-3, "SGD learning rate", low=1e-7, high=1.0, log=True),
    Param("epochs", int, 5, "passes over the forget set", low=1, high=100),
    Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
    Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=0.99),
)


def shrink_boundary(task: UnlearnTask, params: dict, exclude_true: bool) -> UnlearnOutput:
    """Label the forget samples by FGSM neighbours, then fine-tune them toward those labels."""
    images, labels = task.forget_data()
    targets = neighbour_labels(task, images, labels, params["bound"], exclude_true)
    model = task.copy_original()
    optimizer = make_optimizer("sgd", model.parameters(), params["lr"], params["momentum"])

    def shrink_loss(batch, _epoch):
        return F.cross_entropy(model(batch_images(images, batch, task)), targets[batch].to(task.device))

    stats = train_steps(model, task, len(labels), params["batch_size"], params["epochs"], shrink_loss,
                        optimizer, "boundary shrink")
    counts = torch.bincount(targets, minlength=task.bundle.num_classes).tolist()
    kept_true = float((targets == labels).float().mean().item() * 100.0) if len(labels) else 0.0
    return UnlearnOutput(model, {**stats, "neighbour_label_counts": counts,
                                 "share_labelled_true_class": kept_true})


@register
class BoundaryShrink(UnlearningMethod):
    name = "bs"
    title = "BS (boundary shrink)"
    summary = ("FGSM on the original model gives each forget sample a neighbour label (its prediction on the "
               "perturbed copy, often still the true class); fine-tune toward it.")
    forget_kinds = ("class",)
    params = BS_PARAMS

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        return shrink_boundary(task, params, exclude_true=False)
