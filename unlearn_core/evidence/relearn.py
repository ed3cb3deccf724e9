"""Relearn time: how fast fine-tuning on a few forget samples brings the forget accuracy back."""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearn_core.data import DatasetBundle, to_float
from unlearn_core.device import seeded_global_rng
from unlearn_core.evidence._common import _accuracy, _subsample, _take
from unlearn_core.evidence.request import EvidenceError, resolve_params
from unlearn_core.forget import ForgetSplit


@dataclass(frozen=True)
class RelearnSets:
    """The forget samples a copy is fine-tuned on and the set its forget accuracy is read on."""

    slice_idx: np.ndarray     # training-set indices (forget samples) to relearn from
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    eval_source: str          # "test": the forgotten classes' test samples; "train": held-out forget samples



def _trainable_copy(model, device):
    """A copy of ``model`` on ``device`` (default: the model's own) with every parameter trainable, and that device."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    learner = copy.deepcopy(model).to(device)
    for parameter in learner.parameters():
        parameter.requires_grad_(True)
    return learner, device

def relearn_sets(bundle: DatasetBundle, split: ForgetSplit, params: dict, seed: int = 0) -> RelearnSets:
    """Class/sub-class forgetting: relearn from ``samples`` forget samples, read Acc_f on the test samples.

    Other forget sets: the slice (at most half the forget set) is taken out of
    the forget set and the forget accuracy is read on the rest, so relearning
    is measured on samples the copy was not fine-tuned on.
    """
    rng = np.random.default_rng(seed * 1000 + 37)
    forget_idx = rng.permutation(np.asarray(split.forget_idx, dtype=np.int64))
    if len(split.test_forget_idx):
        slice_idx = np.sort(forget_idx[:params["samples"]])
        eval_idx = _subsample(split.test_forget_idx, params["eval_max"], rng)
        images, labels, source = bundle.test_x, bundle.test_y, "test"
    else:
        if len(forget_idx) < 2:
            raise EvidenceError("relearn time needs at least 2 forget samples when the forget set has no test "
                                "samples (one to relearn from, one to read the accuracy on)")
        take = min(params["samples"], len(forget_idx) // 2)
        slice_idx = np.sort(forget_idx[:take])
        eval_idx = _subsample(forget_idx[take:], params["eval_max"], rng)
        images, labels, source = bundle.train_x, bundle.train_y, "train"
    return RelearnSets(slice_idx, _take(images, eval_idx), _take(labels, eval_idx), source)


def relearn_time(model: nn.Module, original_accuracy: float, bundle: DatasetBundle, split: ForgetSplit, device,
                 params: dict | None = None, seed: int = 0, sets: RelearnSets | None = None) -> dict:
    """Optimiser steps until a copy fine-tuned on a few forget samples regains forget accuracy.

    A deep copy of ``model`` is trained with cross-entropy on the true labels
    of ``samples`` forget samples (SGD, ``lr``, momentum 0.9, batches of
    ``batch_size`` cycling over the slice, seeded); after each step its forget
    accuracy ``a_t`` is read on the evaluation set of :func:`relearn_sets`.
    With ``a_0`` the copy's own accuracy before any step and ``a_orig`` the
    original model's on the same set, the target is
    ``a_0 + level * (a_orig - a_0)`` (default: half way back). The result is
    the first ``t`` with ``a_t >= target`` (0 if ``a_0`` already reaches it),
    or ``None`` with ``relearn_capped`` when ``max_steps`` steps do not
    (``None`` with ``diverged`` if the loss became non-finite first).
    A model that only hid the forget set relearns in a handful of steps; the
    retrained model is the reference. (Relearn time as an unlearning check:
    Golatkar et al., CVPR 2020; Lynch et al., 2024.)
    """
    params = resolve_params("relearn", params)
    sets = sets or relearn_sets(bundle, split, params, seed)
    learner, device = _trainable_copy(model, device)
    start = _accuracy(learner, sets.eval_images, sets.eval_labels, device)
    target = start + params["level"] * (original_accuracy - start)
    history = [start]
    steps, diverged = (0 if start >= target else None), False
    if steps is None:
        with contextlib.closing(_sgd_steps(learner, bundle, sets, params["lr"], params["batch_size"],
                                           params["max_steps"], seed, 41, device)) as stepper:
            for step in stepper:
                if step is None:
                    diverged = True  # reported, not raised: a measurement must not fail the run it describes
                    break
                accuracy = _accuracy(learner, sets.eval_images, sets.eval_labels, device)
                history.append(accuracy)
                if accuracy >= target:
                    steps = step
                    break
    # "Not within max_steps" only when the cap was reached; a diverged count is flagged as such instead.
    return {"relearn_steps": steps, "relearn_capped": steps is None and not diverged, "max_steps": params["max_steps"],
            "start_acc": start, "target_acc": target, "original_acc": original_accuracy, "final_acc": history[-1],
            "accuracy_by_step": history, "diverged": diverged, "eval": sets.eval_source,
            "n_relearn": int(len(sets.slice_idx)), "n_eval": int(len(sets.eval_labels))}


# -- relearn from retained data only -------------------------------------------------------------------------------

def retain_relearn_sets(bundle: DatasetBundle, split: ForgetSplit, params: dict, seed: int = 0) -> RelearnSets:
    """``samples`` retained training samples to fine-tune on; the forget accuracy is read on forget samples.

    The evaluation set is the forgotten classes' (sub-class's) test samples
    when there are any, else the forget training samples themselves (none of
    them is trained on here), at most ``eval_max`` of them.
    """
    rng = np.random.default_rng(seed * 1000 + 53)
    slice_idx = _subsample(split.retain_idx, params["samples"], rng)
    if len(split.test_forget_idx):
        eval_idx, images, labels, source = (_subsample(split.test_forget_idx, params["eval_max"], rng),
                                            bundle.test_x, bundle.test_y, "test")
    else:
        eval_idx, images, labels, source = (_subsample(split.forget_idx, params["eval_max"], rng),
                                            bundle.train_x, bundle.train_y, "train")
    if len(slice_idx) == 0 or len(eval_idx) == 0:
        raise EvidenceError("relearning from retained data needs retained samples and forget samples to read")
    return RelearnSets(slice_idx, _take(images, eval_idx), _take(labels, eval_idx), source)


def relearn_from_retain(model: nn.Module, original_accuracy: float, bundle: DatasetBundle, split: ForgetSplit,
                        device, params: dict | None = None, seed: int = 0, sets: RelearnSets | None = None) -> dict:
    """How much forget accuracy comes back when a copy is fine-tuned on retained samples only.

    The "dormant to deleted" test (Siddiqui et al., "From Dormant to Deleted:
    Tamper-Resistant Unlearning Through Weight-Space Regularization", arXiv
    2505.22310): knowledge an unlearning method only suppressed can return
    when the model is fine-tuned on data without a single forget sample.

    A deep copy of ``model`` is trained with cross-entropy on the true labels
    of ``samples`` retained training samples (SGD, ``lr``, momentum 0.9,
    batches of ``batch_size`` cycling over the slice, seeded) for ``steps``
    steps; its forget accuracy ``a_t`` (%) is read every ``every`` steps on
    the set of :func:`retain_relearn_sets`. Reported: ``start_acc`` (``a_0``),
    ``final_acc``, ``max_acc`` over the readings, ``recovered = final_acc -
    start_acc`` (points), and ``recovered_fraction = recovered / (a_orig -
    a_0)``, the share of the gap to the original's forget accuracy that came
    back (None when the model starts at or above the original). The retrained
    model, which never saw the forget set, is the reference for what
    fine-tuning on retained data alone gives.
    """
    params = resolve_params("relearn_retain", params)
    sets = sets or retain_relearn_sets(bundle, split, params, seed)
    learner, device = _trainable_copy(model, device)
    start = _accuracy(learner, sets.eval_images, sets.eval_labels, device)
    readings = [(0, start)]
    diverged = False
    with contextlib.closing(_sgd_steps(learner, bundle, sets, params["lr"], params["batch_size"], params["steps"],
                                       seed, 59, device)) as stepper:
        for step in stepper:
            if step is None:
                diverged = True  # reported, not raised: a measurement must not fail the run it describes
                break
            if step % params["every"] == 0 or step == params["steps"]:
                readings.append((step, _accuracy(learner, sets.eval_images, sets.eval_labels, device)))
    final = readings[-1][1]
    gap = original_accuracy - start
    return {"start_acc": start, "final_acc": final, "max_acc": max(acc for _, acc in readings),
            "original_acc": original_accuracy, "recovered": final - start,
            "recovered_fraction": (final - start) / gap if gap > 1e-9 else None,
            "accuracy_by_step": [{"step": s, "acc": a} for s, a in readings], "steps": readings[-1][0],
            "diverged": diverged, "eval": sets.eval_source, "n_retain": int(len(sets.slice_idx)),
            "n_eval": int(len(sets.eval_labels))}


def _sgd_steps(learner: nn.Module, bundle: DatasetBundle, sets: "RelearnSets", lr: float, batch_size: int,
               steps: int, seed: int, salt: int, device):
    """Fine-tune ``learner`` with cross-entropy on the true labels of ``sets.slice_idx`` (SGD, momentum 0.9),
    batches cycling over a fresh seeded shuffle of the slice each pass; yield each step's number after its update.

    Yields ``None`` (and stops) when a loss is not finite. The global RNG is seeded (``seeded_global_rng``) while
    the caller reads the model between steps too, so close the generator when done (``contextlib.closing``).
    """
    images = _take(bundle.train_x, sets.slice_idx)
    labels = _take(bundle.train_y, sets.slice_idx)
    optimizer = torch.optim.SGD(learner.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed * 1000 + salt)
    order = torch.zeros(0, dtype=torch.long)
    with torch.enable_grad(), seeded_global_rng(seed, device):
        for step in range(1, steps + 1):
            if len(order) == 0:  # a fresh shuffle of the slice each pass
                order = torch.randperm(len(labels), generator=generator)
            batch, order = order[:batch_size], order[batch_size:]
            learner.train()
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(learner(to_float(images[batch]).to(device)), labels[batch].to(device))
            if not math.isfinite(loss.item()):
                yield None
                return
            loss.backward()
            optimizer.step()
            yield step
