"""NatMU: natural machine unlearning with hybrid images (He et al., TPAMI 2025).

Each forget image is blended pixel-wise with remaining images of the classes
the original model confuses it with, and each hybrid carries its remaining
partner's correct label. Fine-tuning on the remaining data plus these hybrids
teaches the model to rely on correct information, which suppresses what it
learned from the forget samples without relabelling them wrongly. The masks,
partner choice and blending live in :mod:`unlearn_core.hybrids`; see
``shared/specs/natmu.md`` and ``docs/NATMU.md``.
"""

from __future__ import annotations

import numpy as np
import torch

from unlearn_core.hybrids import build_hybrids, mask_index, select_partners, tent_masks
from unlearn_core.methods._common import fit_classifier
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register
from unlearn_core.metrics import softmax
from unlearn_core.models import reinit_head
from unlearn_core.training import predict_logits

GALLERY_SIZE = 6


@register
class NatMU(UnlearningMethod):
    name = "natmu"
    title = "NatMU (natural unlearning)"
    summary = ("Fine-tune on the remaining data plus hybrids: each forget image blended with remaining images of "
               "its most-confused classes, labelled with the remaining image's correct class.")
    params = (
        Param("delta", float, -0.2, "mask shift: the forget image's weight in a hybrid (1 = plain relabelling, "
              "about -0.2 = mean weight 0.3)", low=-1.0, high=1.0),
        Param("num_hybrids", int, 4, "hybrids per forget sample (capped at the number of classes it may borrow "
              "from: C-1 less forgotten classes)", low=1, high=64),
        Param("lr", float, 1e-3, "AdamW learning rate (cosine decay to 0 per step)", low=1e-6, high=1.0, log=True),
        Param("weight_decay", float, 5e-4, "AdamW weight decay", low=0.0, high=1.0),
        Param("epochs", int, 5, "passes over remaining data + hybrids", low=1, high=200),
        Param("batch_size", int, 128, "mini-batch size", low=1, high=4096),
        Param("reinit_head", str, "auto", "re-initialise the final linear weights before fine-tuning (auto = for "
              "class-wise forgetting only)", choices=("auto", "yes", "no")),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        split = task.split
        forget_x, forget_y = task.forget_data()
        retain_x, retain_y = task.retain_data()
        probs = softmax(predict_logits(task.frozen_original(), forget_x, task.device))
        rng = np.random.default_rng(task.seed * 1000 + 17)
        plan = select_partners(probs, forget_y.numpy(), retain_y.numpy(), params["num_hybrids"],
                               forgotten_classes=split.forgotten_classes, balance=not split.is_classwise, rng=rng)
        forget_np, retain_np = forget_x.numpy(), retain_x.numpy()
        # Hybrids are built once, before training, in raw pixel space (models normalise internally),
        # and kept as uint8 like the data set itself.
        hybrids = build_hybrids(forget_np, retain_np, plan, params["delta"])

        images = torch.cat([retain_x, torch.from_numpy(hybrids)])
        labels = torch.cat([retain_y, torch.from_numpy(plan.label)])
        augment_mask = torch.cat([torch.ones(len(retain_y), dtype=torch.bool),
                                  torch.zeros(len(plan), dtype=torch.bool)])

        model = task.copy_original()
        reinit = params["reinit_head"] == "yes" or (params["reinit_head"] == "auto" and split.is_classwise)
        if reinit:
            reinit_head(model, seed=task.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
        total_steps = params["epochs"] * max(1, -(-len(labels) // params["batch_size"]))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=0.0)
        stats = fit_classifier(model, images, labels, task, optimizer, params["epochs"], params["batch_size"],
                               augment=task.recipe.augment, augment_mask=augment_mask,
                               scheduler_per_step=scheduler.step, stage="natmu fine-tune")
        artifacts = {**stats, **plan.summary(), "reinit_head": reinit,
                     "gallery": _gallery(task, plan, probs, forget_np, retain_np, hybrids, params["delta"])}
        return UnlearnOutput(model, artifacts)


def _gallery(task: UnlearnTask, plan, probs: np.ndarray, forget_np: np.ndarray, retain_np: np.ndarray,
             hybrids: np.ndarray, delta: float) -> dict:
    """A few forget samples with their partners, masks, hybrids and labels, for the app's gallery.

    Only samples with the full number of hybrids are shown, so the arrays
    stay rectangular; distinct classes are preferred for variety.
    """
    height, width = forget_np.shape[-2:]
    per_sample = plan.hybrids_per_sample
    slots = int(per_sample.max(initial=0))
    candidates = np.flatnonzero(per_sample == slots) if slots else np.zeros(0, dtype=np.int64)
    order = np.random.default_rng(task.seed * 1000 + 23).permutation(candidates)
    labels = np.asarray(task.bundle.train_y)[task.split.forget_idx]
    first_of_class: dict[int, int] = {}
    for i in order:
        first_of_class.setdefault(int(labels[i]), int(i))
    varied = list(first_of_class.values())[:GALLERY_SIZE]
    rest = [int(i) for i in order[:2 * GALLERY_SIZE] if int(i) not in varied]
    chosen = (varied + rest)[:GALLERY_SIZE]
    rows = [np.flatnonzero(plan.forget_pos == i) for i in chosen]  # sorted by slot
    take = np.asarray(rows, dtype=np.int64).reshape(len(chosen), slots)
    chosen = np.asarray(chosen, dtype=np.int64)
    return {
        "delta": float(delta),
        "class_names": list(task.bundle.class_names),
        "masks": tent_masks(height, width, delta),
        "mask_index": mask_index(np.arange(slots)).astype(np.int64),
        "forget_index": np.asarray(task.split.forget_idx)[chosen],
        "forget_images": forget_np[chosen],
        "forget_labels": labels[chosen].astype(np.int64),
        "original_probs": probs[chosen].astype(np.float32),
        "partner_index": np.asarray(task.split.retain_idx)[plan.partner_pos[take]],
        "partner_images": retain_np[plan.partner_pos[take]],
        "hybrid_labels": plan.label[take],
        "hybrid_images": hybrids[take],
    }
