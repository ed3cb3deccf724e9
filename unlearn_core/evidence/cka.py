"""Linear CKA per layer: does the unlearned model's representation resemble the original's or the retrained one's?

Linear centred kernel alignment (Kornblith et al., "Similarity of Neural
Network Representations Revisited", ICML 2019, eq. for linear CKA): for
features ``X`` (n x p) and ``Y`` (n x q) of the same n samples, with columns
centred,

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F * ||Y^T Y||_F)
              = <K_c, L_c>_F / (||K_c||_F * ||L_c||_F),

where ``K_c = H X X^T H`` and ``L_c = H Y Y^T H`` are the centred Gram
matrices (``H = I - 11^T / n``). It is 1 for features equal up to an
orthogonal transform and isotropic scaling, and near 0 for unrelated ones.
The Gram form is used, so a layer's cost is an ``n x n`` matrix whatever its
width. A layer with constant features has no CKA (NaN; ``None`` in JSON).

The layers are the model's ``Conv2d`` and ``Linear`` modules
(:func:`unlearn_core.nullspace.tracked_layers`), read at their outputs by
forward hooks; a convolution's output ``(C, H, W)`` is one flattened row per
sample. :func:`cka_by_layer` compares the unlearned model with each reference
(the original and the retrained model) layer by layer: a method that only
changed the head keeps CKA(original) = 1 in every layer below it; one that
forgot in its features moves towards CKA(retrained).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from unlearn_core.data import to_float
from unlearn_core.evidence.request import EvidenceError
from unlearn_core.nullspace import tracked_layers


def _centred_gram(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    x = x - x.mean(0, keepdims=True)
    return x @ x.T


def cka_from_grams(k_centred: np.ndarray, l_centred: np.ndarray) -> float:
    """Linear CKA of two centred Gram matrices of the same samples (NaN when one is zero)."""
    k = np.asarray(k_centred, dtype=np.float64)
    l_ = np.asarray(l_centred, dtype=np.float64)
    norm = np.linalg.norm(k) * np.linalg.norm(l_)
    if norm <= 0 or not math.isfinite(norm):
        return math.nan
    return float(np.sum(k * l_) / norm)


def linear_cka(x, y) -> float:
    """Linear CKA of ``(n, p)`` and ``(n, q)`` features of the same n samples (module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim < 2 or y.ndim < 2 or len(x) != len(y) or len(x) < 2:
        raise EvidenceError(f"linear CKA needs two feature arrays with one row per sample (at least 2 samples); got "
                            f"{x.shape} and {y.shape}")
    return cka_from_grams(_centred_gram(x), _centred_gram(y))


def _hook_gram(store: dict, name: str):
    def hook(_module, _inputs, output):
        x = output.detach().flatten(1).float()
        x = x - x.mean(0, keepdim=True)
        store[name] = (x @ x.T).cpu().double().numpy()
    return hook


@torch.no_grad()
def layer_grams(model: nn.Module, images: torch.Tensor, device=None) -> dict[str, np.ndarray]:
    """Centred Gram matrix of every tracked layer's output on ``images`` (``uint8`` or float), in layer order.

    One forward pass over all ``images`` in eval mode (every module's own
    mode is restored); each hook turns its layer's output into the ``n x n``
    Gram matrix at once (float32 on the model's device, then float64), so
    no layer's features are kept.
    """
    layers = tracked_layers(model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    grams: dict[str, np.ndarray] = {}
    handles = [module.register_forward_hook(_hook_gram(grams, name)) for name, module in layers.items()]
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        model(to_float(images).to(device))
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            module.training = mode
    return {name: grams[name] for name in layers}


def cka_by_layer(grams: dict[str, np.ndarray], references: dict[str, dict[str, np.ndarray]]) -> dict:
    """``{"layers": [...], ref: [CKA per layer]}`` of one model's Grams against each reference's (same layers)."""
    names = list(grams)
    out: dict = {"layers": names}
    for ref, ref_grams in references.items():
        if list(ref_grams) != names:
            raise EvidenceError(f"the {ref} model's layers differ from the unlearned model's; CKA compares the same "
                                f"architecture layer by layer")
        out[ref] = [None if math.isnan(v) else v for v in (cka_from_grams(grams[n], ref_grams[n]) for n in names)]
    return out
