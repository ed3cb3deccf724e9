"""SVD class forgetting (Kodge, Saha, Roy, "Deep Unlearning: Fast and Efficient Gradient-free Class
Forgetting", TMLR 2024): one projection of every layer's weights, no gradient step.

Following the release ``sangamesh-kodge/class_forgetting`` (``main.py``: ``our_unlearn`` and
``get_projection_matrix``; ``models/model_utils.py``: ``forward_cache_projections``; ``models/vgg.py``:
``get_scaled_projections`` and ``project_weights``):

1. ``samples // (number of remaining classes)`` remaining samples per remaining class and up to
   ``samples`` forget samples (seeded draws here; the release takes the first ones of a held-out index
   and one shuffled forget batch).
2. The original model in eval mode records, in one forward pass per set, the input of every
   ``Conv2d`` (unfolded patches) and ``Linear`` layer. The left singular vectors ``U`` and singular
   values ``sigma`` of each layer's activation matrix (no centring) give the scaled projection
   ``M = U diag(lambda) U^T``, ``lambda_i = alpha s_i / ((alpha - 1) s_i + 1)``,
   ``s_i = sigma_i^2 / sum_j sigma_j^2``: ``M_r`` with ``alpha_r`` on remaining data, ``M_f`` with
   ``alpha_f`` on forget data.
3. Every such layer's weight (flattened to ``out x d``; the final classifier included, biases
   unchanged) becomes ``W P^T`` with ``P = I - (M_f - M_f M_r)``: the forget data's dominant input
   directions are removed except where they are shared with the remaining data.

``U`` and ``sigma`` come from the eigendecomposition of each layer's Gram matrix accumulated over all
patches (:func:`unlearn_core.nullspace.accumulate_energy`); the release instead samples one random
``3k x 3k`` window of each conv input and at most 10,000 patch rows (``reshape_conv_input_activation``)
to bound its SVD, an estimate of the same spectrum. The update is applied in low-rank form
(:func:`unlearn_core.subspaces.svd_forget_weight`), never building ``d x d`` matrices.

Designed for class forgetting (the release forgets one class; this code accepts several, taking the
remaining samples from every class that stays). Hyperparameter defaults are the release's
(``--our-alpha-r 100 --our-alpha-f 3 --our-samples 900``); ranges cover its tuning grids
(``analysis/tune_our.py``, ``demo.py``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from unlearn_core.errors import MethodError
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register
from unlearn_core.nullspace import accumulate_energy, layer_input_dim, sample_per_class, tracked_layers
from unlearn_core.subspaces import discriminatory_directions, scaled_importance, svd_forget_weight

# Strength above which a discriminatory direction is counted in the artifacts (half a unit input removed).
REPORT_TAU = 0.5


def choose_samples(task: UnlearnTask, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Remaining indices (``samples // classes`` per remaining class) and up to ``samples`` forget indices."""
    split = task.split
    retain_idx = np.asarray(split.retain_idx)
    labels = task.bundle.train_y.numpy()
    classes = np.unique(labels[retain_idx])
    per_class = max(1, samples // max(len(classes), 1))
    by_class = sample_per_class(labels, retain_idx, per_class, task.seed)
    retain = np.sort(np.concatenate(list(by_class.values())))
    forget_idx = np.asarray(split.forget_idx)
    rng = np.random.default_rng(task.seed * 1000 + 29)
    forget = np.sort(rng.choice(forget_idx, min(samples, len(forget_idx)), replace=False))
    return retain, forget


@register
class SVDForget(UnlearningMethod):
    name = "svd_forget"
    title = "SVD class forgetting (Kodge et al.)"
    forget_kinds = ("class",)
    scope_note = "its retained/forget activation spaces are class-level; a random subset shares its class's space"
    summary = ("No training: per layer, SVD of remaining and forget activations; weights are projected away from "
               "the forget data's dominant input directions that the remaining data does not share.")
    params = (
        Param("alpha_r", float, 100.0, "scaling of the remaining-data projection: lambda = a s / ((a-1) s + 1) "
              "on each direction's energy share s (higher: more directions fully protected)",
              low=1.0, high=1000.0, log=True),
        Param("alpha_f", float, 3.0, "scaling of the forget-data projection (higher: more forget directions "
              "removed)", low=0.25, high=1000.0, log=True),
        Param("samples", int, 900, "remaining samples in all (split evenly over the remaining classes) and the "
              "most forget samples used", low=1, high=100000),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        split, bundle = task.split, task.bundle
        if len(split.forget_idx) == 0:
            raise MethodError("the forget set is empty")
        if len(split.retain_idx) == 0:
            raise MethodError("SVD class forgetting needs remaining data for its retained projection")
        retain_idx, forget_idx = choose_samples(task, params["samples"])
        original = task.frozen_original()
        layers = tracked_layers(original)
        reporter = task.reporter.child("svd_forget activations")
        retain_energy = accumulate_energy(original, bundle.train_x[torch.as_tensor(retain_idx)], task.device,
                                          reporter=reporter, layers=layers)
        forget_energy = accumulate_energy(original, bundle.train_x[torch.as_tensor(forget_idx)], task.device,
                                          reporter=reporter, layers=layers)

        model = task.copy_original()
        model.eval()
        modules = tracked_layers(model)
        rows = []
        diagnostics = 0.0
        with torch.no_grad():
            for step, (name, module) in enumerate(modules.items(), start=1):
                retain_pairs, forget_pairs = retain_energy[name].eigenpairs(), forget_energy[name].eigenpairs()
                u_r, u_f = retain_pairs.vectors(), forget_pairs.vectors()
                lam_r = scaled_importance(retain_pairs.values, params["alpha_r"])
                lam_f = scaled_importance(forget_pairs.values, params["alpha_f"])
                weight = module.weight
                flat = weight.reshape(weight.shape[0], -1)
                new = svd_forget_weight(flat, u_f, lam_f, u_r, lam_r)
                before, after = flat.detach().cpu().double(), new.detach().cpu().double()
                change = float((after - before).norm() / before.norm().clamp_min(1e-30))
                weight.copy_(new.reshape(weight.shape))
                started = time.perf_counter()  # the removed rank is reported, not needed for unlearning
                removed, strengths = discriminatory_directions(u_f, lam_f, u_r, lam_r, REPORT_TAU)
                diagnostics += time.perf_counter() - started
                rows.append({"layer": name, "input_dim": layer_input_dim(module), "retain_rank": len(retain_pairs),
                             "forget_rank": len(forget_pairs), "removed_rank": int(removed.shape[1]),
                             "top_strength": float(strengths[0]) if len(strengths) else 0.0,
                             "weight_change": change})
                task.reporter.child("svd_forget projection")(step=step, steps=len(modules))
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        artifacts = {"layers": rows, "retain_samples": int(len(retain_idx)), "forget_samples": int(len(forget_idx)),
                     "removed_rank_tau": REPORT_TAU, "diagnostics_seconds": diagnostics}
        return UnlearnOutput(model, artifacts, diagnostics_seconds=diagnostics)
