"""UNSC: unlearning via null space calibration (Chen et al., IJCAI 2024).

The model is fine-tuned on the forget samples only, towards pseudo-labels (the
remaining class the frozen original finds most likely), while every weight
update is projected into the null space of the inputs each layer receives on
remaining data (:mod:`unlearn_core.nullspace`). Remaining-data
pre-activations therefore barely move, and the forget samples are moved into
their nearest remaining class.

Extension for forget sets that are not whole classes (random, indices,
sub-class): there is no forgotten class to mask, so a sample's pseudo-label is
the original model's most likely class other than the sample's own true
class, and the subspace is built from the remaining samples of every class.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import torch
from torch import nn

from unlearn_core import paths
from unlearn_core.data import to_float
from unlearn_core.errors import MethodError
from unlearn_core.methods._common import fit_classifier, random_labels
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, freeze_batchnorm, register
from unlearn_core.nullspace import (GradientProjector, RetainedSpace, build_retained_space, class_factors,
                                    incremental_space, preactivation_drift, sample_per_class)
from unlearn_core.training import predict_logits

DRIFT_SAMPLES = 256
INCREMENTAL_STEP = 0.003


def pseudo_labels(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, forgotten: tuple[int, ...],
                  device: torch.device) -> torch.Tensor:
    """Argmax of the original's logits with the forgotten classes (or, if none, the true class) masked out."""
    logits = predict_logits(model, images, device)
    if forgotten:
        logits[:, list(forgotten)] = float("-inf")
    else:
        logits[torch.arange(len(labels)), labels] = float("-inf")
    return logits.argmax(1)


def _sample_key(bundle, indices: np.ndarray) -> str:
    digest = hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]
    return f"{bundle.name}:{int(bundle.train_y.numel())}:{digest}"


@register
class UNSC(UnlearningMethod):
    name = "unsc"
    title = "UNSC (null space calibration)"
    forget_kinds = ("class",)
    scope_note = ("on other forget sets it relabels samples whose class stays to another class, "
                  "which demonstrates over-unlearning")
    summary = ("Fine-tune on the forget samples towards pseudo-labels, with every weight update projected into the "
               "null space of the remaining data's layer inputs, so remaining classes are left alone. Built for class "
               "forgetting: on random samples it over-unlearns badly (docs/UNSC.md).")
    params = (
        Param("eps", float, 0.99, "energy of the remaining data's layer inputs the retained subspace keeps "
              "(higher: more protection, less room to unlearn)", low=0.5, high=1.0),
        Param("samples_per_class", int, 100, "remaining samples per class used to build the subspace (0 = all)",
              low=0, high=100000),
        Param("lr", float, 1.0, "SGD learning rate (plain SGD: no momentum, no weight decay)", low=1e-5, high=2.0,
              log=True),
        Param("epochs", int, 6, "passes over the forget samples", low=1, high=500),
        Param("batch_size", int, 128, "mini-batch size", low=1, high=4096),
        Param("labels", str, "pseudo", "target labels: 'pseudo' (nearest remaining class by the original model) "
              "or 'random' (the paper's RL + null space ablation)", choices=("pseudo", "random")),
        Param("basis", str, "pooled", "'pooled': one basis from all sampled remaining data; 'incremental': "
              "per-class bases (cached per model) merged with the GPM rule, thresholds rising by 0.003 per class up "
              "to eps",
              choices=("pooled", "incremental")),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        split, bundle = task.split, task.bundle
        if len(split.forget_idx) == 0:
            raise MethodError("the forget set is empty")
        if len(split.retain_idx) == 0:
            raise MethodError("UNSC needs remaining data to build the retained subspace")
        original = task.frozen_original()
        forget_x, forget_y = task.forget_data()
        forgotten = tuple(int(c) for c in split.forgotten_classes)

        started = time.perf_counter()
        space = self._retained_space(task, params)
        subspace_seconds = time.perf_counter() - started

        if params["labels"] == "pseudo":
            targets = pseudo_labels(original, forget_x, forget_y, forgotten, task.device)
        else:
            targets = random_labels(forget_y, bundle.num_classes, task.generator(17), "remaining_wrong", forgotten)

        model = task.copy_original()
        projector = space.projector(model)
        diagnostics_started = time.perf_counter()
        removed = self._removed_share(model, projector, forget_x, targets, task)
        diagnostics_seconds = time.perf_counter() - diagnostics_started
        optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=0.0, weight_decay=0.0)
        stats = fit_classifier(model, forget_x, targets, task, optimizer, params["epochs"], params["batch_size"],
                               after_backward=projector.project, train_mode=freeze_batchnorm, stage="unsc")

        diagnostics_started = time.perf_counter()
        retain_x, _ = task.retain_data()
        pick = task.generator(23)
        retain_probe = retain_x[torch.randperm(len(retain_x), generator=pick)[:DRIFT_SAMPLES]]
        forget_probe = forget_x[torch.randperm(len(forget_x), generator=pick)[:DRIFT_SAMPLES]]
        artifacts = {
            "final_loss": stats["final_loss"],
            "subspace_seconds": subspace_seconds,
            "subspace_samples": space.samples,
            "basis_form": params["basis"],
            "layers": space.rank_table(),
            "spectrum": {row["layer"]: np.asarray(row["spectrum"], dtype=np.float32)
                         for row in space.summary()},
            "gradient_removed_share": removed,
            "preactivation_drift": {
                "remaining": preactivation_drift(original, model, retain_probe, task.device),
                "forget": preactivation_drift(original, model, forget_probe, task.device),
            },
            "target_counts": np.bincount(targets.numpy(), minlength=bundle.num_classes).tolist(),
        }
        diagnostics_seconds += time.perf_counter() - diagnostics_started
        artifacts["diagnostics_seconds"] = diagnostics_seconds
        # The gradient share and drift are measurements for the dashboard, not part of unlearning.
        return UnlearnOutput(model, artifacts, diagnostics_seconds=diagnostics_seconds)

    def _retained_space(self, task: UnlearnTask, params: dict) -> RetainedSpace:
        split, bundle = task.split, task.bundle
        by_class = sample_per_class(bundle.train_y.numpy(), np.asarray(split.retain_idx),
                                    params["samples_per_class"], task.seed)
        reporter = task.reporter.child("unsc subspace")
        original = task.frozen_original()
        if params["basis"] == "pooled":
            chosen = np.sort(np.concatenate(list(by_class.values())))
            images = bundle.train_x[torch.as_tensor(chosen, dtype=torch.long)]
            return build_retained_space(original, images, params["eps"], task.device, reporter=reporter)
        images_by_class = {c: bundle.train_x[torch.as_tensor(idx, dtype=torch.long)] for c, idx in by_class.items()}
        keys = {c: _sample_key(bundle, idx) for c, idx in by_class.items()}
        factors = class_factors(original, images_by_class, task.device, cache_dir=paths.checkpoints_dir(),
                                sample_keys=keys, reporter=reporter)
        classes = sorted(factors)
        # GPM raises the threshold by 0.003 per class; ending at eps keeps the last (strictest) class at eps
        # instead of pushing later classes to 1.0, which would leave no null space at all.
        first = max(0.5, params["eps"] - INCREMENTAL_STEP * (len(classes) - 1))
        space = incremental_space(original, factors, classes, first, INCREMENTAL_STEP)
        space.samples = int(sum(len(idx) for idx in by_class.values()))
        return space

    @staticmethod
    def _removed_share(model: nn.Module, projector: GradientProjector, images: torch.Tensor, targets: torch.Tensor,
                       task: UnlearnTask) -> dict[str, float]:
        """Share of the full forget-set gradient each layer's projection removes (measured once, before training)."""
        model.train()
        freeze_batchnorm(model)
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.eval()  # the reported share must not depend on one random dropout mask
        model.zero_grad(set_to_none=True)
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        with torch.enable_grad():
            for start in range(0, len(targets), 512):
                x = to_float(images[start:start + 512]).to(task.device)
                loss = loss_fn(model(x), targets[start:start + 512].to(task.device)) / len(targets)
                loss.backward()
        shares = projector.removed_share()
        model.zero_grad(set_to_none=True)
        model.eval()
        return shares


def forget_gradient_shares(model, space, images: torch.Tensor, targets: torch.Tensor, device=None) -> dict:
    """Per layer, the share of the forget-set weight gradient inside the top-``r`` retained directions, for every r.

    Returns ``{layer: array}`` where ``array[r]`` is the share of the squared
    gradient norm that projecting onto the first ``r`` eigenvectors captures,
    i.e. what UNSC's projection removes at a rank ``r``: with ``G`` a layer's
    summed cross-entropy weight gradient on the forget samples (flattened to
    ``(out, in)``) and ``U_r`` the first ``r`` eigenvectors of the retained
    space (:mod:`unlearn_core.nullspace`), ``share[r] = ||G U_r||_F^2 / ||G||_F^2``.
    Batch-norm statistics are frozen and dropout is off, as in UNSC's fine-tune.
    One backward pass serves every eps.
    """
    import copy

    from unlearn_core.nullspace import tracked_layers

    device = device or next(model.parameters()).device
    work = copy.deepcopy(model).to(device)
    work.train()
    freeze_batchnorm(work)
    for module in work.modules():
        if isinstance(module, nn.Dropout):
            module.eval()  # the share must not depend on a random dropout mask
    work.zero_grad(set_to_none=True)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for start in range(0, len(images), 256):
        x = to_float(images[start:start + 256]).to(device)
        loss_fn(work(x), targets[start:start + 256].to(device)).backward()
    shares = {}
    for name, module in tracked_layers(work).items():
        grad = module.weight.grad
        spectrum = space.layers.get(name)
        if grad is None or spectrum is None:
            continue
        flat = grad.reshape(grad.shape[0], -1).double()
        total = float((flat ** 2).sum())
        energy = ((flat @ spectrum.eigenvectors.to(flat.device).double()) ** 2).sum(0).cpu().numpy()
        cumulative = np.concatenate([[0.0], np.cumsum(energy)]) / total if total > 0 else np.zeros(len(energy) + 1)
        shares[name] = np.minimum(cumulative, 1.0)
    return shares
