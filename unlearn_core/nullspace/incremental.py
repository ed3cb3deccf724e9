"""The per-class (GPM) form: each class's energy as a cached factor, merged on request."""

from __future__ import annotations

import hashlib
import io
import time
from typing import Iterable

import numpy as np
import torch
from torch import nn

from unlearn_core.checkpoints import atomic_write_bytes, cache_key
from unlearn_core.errors import MethodError
from unlearn_core.progress import Reporter
from unlearn_core.nullspace.layers import layer_input_dim, tracked_layers
from unlearn_core.nullspace.spectrum import RetainedSpace, accumulate_energy, factor_eigenpairs, make_spectrum
from unlearn_core.nullspace.constants import ENERGY_TOLERANCE, NULLSPACE_CACHE_VERSION


def model_fingerprint(model: nn.Module) -> str:
    """A hash of every weight and buffer: the key of anything derived from this exact model."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def class_factors(model: nn.Module, images_by_class: dict[int, torch.Tensor], device=None, batch_size: int = 256,
                  cache_dir=None, sample_keys: dict[int, str] | None = None,
                  reporter: Reporter | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """Per class, per layer, the factor ``F_c`` of that class's Gram matrix.

    With ``cache_dir`` and ``sample_keys`` (a stable description of which
    samples each class used), factors are read from and written to disk,
    keyed by the model's weights, so they are computed once per model.
    """
    from unlearn_core.checkpoints import read_checkpoint  # local: keeps import order simple

    device = device or next(model.parameters()).device
    layers = tracked_layers(model)
    fingerprint = model_fingerprint(model) if cache_dir is not None else ""
    factors: dict[int, dict[str, torch.Tensor]] = {}
    for position, (cls, images) in enumerate(images_by_class.items(), start=1):
        path = None
        if cache_dir is not None and sample_keys is not None:
            key = cache_key({"v": NULLSPACE_CACHE_VERSION, "kind": "class-factor", "model": fingerprint,
                             "class": int(cls), "samples": sample_keys[cls], "layers": list(layers)})
            path = cache_dir / f"nullspace-{key}.pt"
            if path.exists():
                try:
                    stored = read_checkpoint(path)["state_dict"]
                    if set(stored) == set(layers):
                        factors[cls] = {name: stored[name].to(device) for name in layers}
                        continue
                except Exception:  # a damaged cache file is rebuilt, never trusted
                    pass
        energy = accumulate_energy(model, images, device, batch_size, None, layers)
        factors[cls] = {name: energy[name].factor().float() for name in layers}
        if path is not None:
            buffer = io.BytesIO()
            torch.save({"state_dict": {k: v.cpu() for k, v in factors[cls].items()},
                        "meta": {"class": int(cls), "model": fingerprint}}, buffer)
            atomic_write_bytes(path, buffer.getvalue())
        if reporter is not None:
            reporter(step=position, steps=len(images_by_class))
    return factors


def gpm_merge(factors: Iterable[torch.Tensor], thresholds: Iterable[float], dim: int) -> torch.Tensor:
    """Merge per-class factors into one orthonormal basis with the GPM update rule.

    For each class in turn: the residual ``F - U U^T F`` carries the energy the
    basis misses; counting the energy already captured, add the residual's top
    singular vectors until the class's captured share reaches its threshold,
    never exceeding ``dim`` columns.
    """
    basis: torch.Tensor | None = None
    for factor, threshold in zip(factors, thresholds):
        factor = factor.double()
        total = float((factor ** 2).sum())
        if total <= 0.0:
            continue
        residual = factor if basis is None else factor - basis @ (basis.T @ factor)
        missing = float((residual ** 2).sum())
        captured = total - missing
        if captured / total >= threshold or (basis is not None and basis.shape[1] >= dim):
            continue
        u, s, _ = torch.linalg.svd(residual, full_matrices=False)
        gained = captured + torch.cumsum(s ** 2, 0).cpu().numpy()
        reached = np.nonzero(gained / total >= min(threshold, 1.0 - ENERGY_TOLERANCE))[0]
        add = int(reached[0]) + 1 if len(reached) else len(s)
        room = dim - (0 if basis is None else basis.shape[1])
        new = u[:, :min(add, room)]
        basis = new if basis is None else torch.cat([basis, new], 1)
        # Re-orthonormalise: rounding in long merges would otherwise let columns drift from orthogonality.
        basis, _ = torch.linalg.qr(basis)
    if basis is None:
        return torch.zeros(dim, 0, dtype=torch.float32)
    return basis.float()


def incremental_space(model: nn.Module, factors: dict[int, dict[str, torch.Tensor]], classes: Iterable[int],
                      eps: float = 0.97, eps_step: float = 0.003) -> RetainedSpace:
    """The incremental form: merge the listed classes' factors, class ``t`` at ``min(eps + t*eps_step, 1)``.

    The spectra reported alongside are of the pooled Gram ``sum_c F_c F_c^T``,
    so the dashboard draws the same picture in both forms.
    """
    started = time.perf_counter()
    layers = tracked_layers(model)
    classes = [int(c) for c in classes]
    if not classes:
        raise MethodError("no remaining class to build the retained subspace from")
    thresholds = [min(eps + t * eps_step, 1.0) for t in range(len(classes))]
    bases, spectra = {}, {}
    for name, module in layers.items():
        dim = layer_input_dim(module)
        per_class = [factors[c][name] for c in classes]
        bases[name] = gpm_merge(per_class, thresholds, dim).to(per_class[0].device)
        spectra[name] = make_spectrum(name, module, factor_eigenpairs(torch.cat(per_class, 1).double()), 0)
    return RetainedSpace(spectra, eps, 0, time.perf_counter() - started, bases,
                         {"form": "incremental", "thresholds": thresholds, "classes": classes})
