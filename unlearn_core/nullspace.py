"""The retained subspace of every layer and the null-space gradient projection (UNSC).

For each ``nn.Conv2d`` and ``nn.Linear`` layer, the inputs the layer receives
on remaining data span a subspace; a weight update orthogonal to it leaves the
layer's pre-activations on that data unchanged. This module finds those
subspaces and projects gradients out of them.

* :func:`build_retained_space` records every layer's input with forward
  pre-hooks in eval mode, unfolds conv inputs exactly as the layer sees them
  (its real padding, stride and dilation) and accumulates the Gram matrix
  ``G = R R^T`` batch by batch into float64 (products of bounded chunks in
  the activations' precision), so the representation matrix ``R`` is never
  held. One symmetric eigendecomposition of ``G`` per layer gives the
  left singular vectors and squared singular values of ``R``.
* A :class:`LayerSpectrum` keeps the whole decomposition, so the rank and
  null-space dimension for any other ``eps`` come from a cumulative sum, not
  from new Gram matrices (the dashboard's eps slider).
* :func:`class_factors` / :func:`incremental_space` give the per-class form:
  each class's energy is stored once as a compact factor ``F_c`` with
  ``F_c F_c^T = G_c`` (cached on disk, keyed by the model's weights and the
  samples used) and merged on request with the GPM update rule.
* :class:`GradientProjector` maps each layer *module* (never a position) to
  ``P = U U^T`` and applies ``g <- g - g P`` to its weight gradient.

Grouped convolutions (``groups > 1``) are refused: their weight rows see
different input channels, so one basis per layer would be wrong.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearn_core.checkpoints import atomic_write_bytes, cache_key
from unlearn_core.data import to_float
from unlearn_core.errors import MethodError
from unlearn_core.progress import Reporter

NULLSPACE_CACHE_VERSION = 1
# Directions whose share of the energy is below this are numerically zero:
# the stored per-class factors drop them, and eps=1 does not count them.
ENERGY_TOLERANCE = 1e-10


def tracked_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every ``Conv2d`` and ``Linear`` layer by qualified name, in module order."""
    layers: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                raise MethodError(f"layer {name!r} is a grouped convolution (groups={module.groups}); the null-space "
                                  "projection supports groups=1 only")
            layers[name] = module
        elif isinstance(module, nn.Linear):
            layers[name] = module
    if not layers:
        raise MethodError("the model has no Conv2d or Linear layer to constrain")
    return layers


def layer_input_dim(module: nn.Module) -> int:
    """Width of one representation column: ``in_features`` or ``C_in * kh * kw``."""
    if isinstance(module, nn.Conv2d):
        return module.in_channels * module.kernel_size[0] * module.kernel_size[1]
    return module.in_features


def representation_rows(module: nn.Module, layer_input: torch.Tensor) -> torch.Tensor:
    """The layer's representation columns as rows, ``(columns, input_dim)``.

    For a conv layer, one row per output location: the input patch the kernel
    sees there, ordered like ``weight.view(C_out, -1)``, border patches
    (zero padding) included.
    """
    if isinstance(module, nn.Conv2d):
        x = layer_input
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            # 'same' padding and reflect/replicate/circular modes: pad exactly as the layer does, then unfold.
            mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
            x = F.pad(x, module._reversed_padding_repeated_twice, mode=mode)
            padding = 0
        else:
            padding = module.padding
        patches = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return layer_input.reshape(-1, layer_input.shape[-1])


class Eigenpairs:
    """Descending nonzero eigenvalues of a PSD matrix; eigenvectors computed only as far as they are asked for.

    The dashboard's spectrum, ranks and eps slider need the eigenvalues alone,
    and UNSC's projection only the leading ``r`` vectors, so the rest of an
    eigendecomposition is never paid for unless someone asks
    (``leading(count)`` returns the first ``count`` vectors, ``(d, count)``).
    """

    def __init__(self, values: torch.Tensor, leading: Callable[[int], torch.Tensor]):
        self.values = values
        self._leading = leading
        self._vectors: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.values.numel())

    def vectors(self, count: int | None = None) -> torch.Tensor:
        """The first ``count`` eigenvectors (all of them by default), computed once and kept."""
        count = len(self) if count is None else min(int(count), len(self))
        if self._vectors is None or self._vectors.shape[1] < count:
            self._vectors = self._leading(count)
        return self._vectors[:, :count]


@dataclass
class LayerSpectrum:
    """The eigendecomposition of one layer's Gram matrix, for any eps.

    ``eigenvalues`` (descending, >= 0, length ``input_dim``) are the squared
    singular values of the representation matrix; ``eigenvectors[:, i]`` the
    matching left singular vectors, for the nonzero ones only. A basis is
    computed lazily (:class:`Eigenpairs`) and kept.
    """

    name: str
    kind: str
    input_dim: int
    eigenvalues: np.ndarray
    pairs: Eigenpairs = field(repr=False)
    columns: int

    @property
    def eigenvectors(self) -> torch.Tensor:
        return self.pairs.vectors().float()

    @property
    def total_energy(self) -> float:
        return float(self.eigenvalues.sum())

    def normalized_spectrum(self) -> np.ndarray:
        """``S_i^2 / sum S^2`` (zeros if the layer saw no energy)."""
        total = self.total_energy
        return self.eigenvalues / total if total > 0 else np.zeros_like(self.eigenvalues)

    def cumulative_energy(self) -> np.ndarray:
        return np.cumsum(self.normalized_spectrum())

    def rank(self, eps: float) -> int:
        """The smallest r whose retained energy reaches ``eps`` (0 for a silent layer)."""
        return min(rank_for_energy(self.eigenvalues, eps), len(self.pairs))

    def null_dim(self, eps: float) -> int:
        return self.input_dim - self.rank(eps)

    def basis(self, eps: float) -> torch.Tensor:
        """Orthonormal ``(input_dim, r)`` basis of the retained subspace."""
        return self.pairs.vectors(self.rank(eps)).float()

    def summary(self, eps: float) -> dict:
        """What the dashboard draws for this layer (plain lists, JSON-able)."""
        rank = self.rank(eps)
        return {"layer": self.name, "kind": self.kind, "input_dim": self.input_dim, "columns": self.columns,
                "eps": float(eps), "rank": rank, "null_dim": self.input_dim - rank,
                "spectrum": self.normalized_spectrum().tolist(), "cumulative": self.cumulative_energy().tolist()}


def rank_for_energy(eigenvalues: np.ndarray, eps: float) -> int:
    """Smallest r with ``sum(eig[:r]) / sum(eig) >= eps`` (eigenvalues descending)."""
    if not 0.0 < eps <= 1.0:
        raise MethodError(f"eps must be in (0, 1], got {eps}")
    total = float(eigenvalues.sum())
    if total <= 0.0:
        return 0
    cumulative = np.cumsum(eigenvalues) / total
    # Without the tolerance, eps=1 would keep directions that hold only rounding noise.
    reached = np.nonzero(cumulative >= min(eps, 1.0 - ENERGY_TOLERANCE))[0]
    return int(reached[0]) + 1 if len(reached) else len(eigenvalues)


@dataclass
class RetainedSpace:
    """Per-layer retained subspaces at one eps, keyed by qualified module name."""

    layers: dict[str, LayerSpectrum]
    eps: float
    samples: int = 0
    seconds: float = 0.0
    bases: dict[str, torch.Tensor] | None = None  # incremental form: merged bases that no single spectrum gives
    info: dict = field(default_factory=dict)

    def basis(self, name: str) -> torch.Tensor:
        if self.bases is not None:
            return self.bases[name]
        return self.layers[name].basis(self.eps)

    def ranks(self, eps: float | None = None) -> dict[str, int]:
        """Rank per layer; a new ``eps`` needs no new Gram matrix (pooled form)."""
        if self.bases is not None and eps is None:
            return {name: int(u.shape[1]) for name, u in self.bases.items()}
        eps = self.eps if eps is None else eps
        return {name: spectrum.rank(eps) for name, spectrum in self.layers.items()}

    def with_eps(self, eps: float) -> "RetainedSpace":
        """The same spectra at another eps (pooled form; cheap)."""
        rank_for_energy(np.ones(1), eps)  # validates eps
        return RetainedSpace(self.layers, eps, self.samples, self.seconds, None, dict(self.info))

    def summary(self, eps: float | None = None) -> list[dict]:
        """Per layer: spectrum, cumulative energy, eps, rank, input and null-space dimensions."""
        eps = self.eps if eps is None else eps
        rows = []
        for name, spectrum in self.layers.items():
            row = spectrum.summary(eps)
            if self.bases is not None and eps == self.eps:
                row["rank"] = int(self.bases[name].shape[1])
                row["null_dim"] = spectrum.input_dim - row["rank"]
            rows.append(row)
        return rows

    def rank_table(self, eps: float | None = None) -> list[dict]:
        """The summary without the spectra: small enough for a run's artifacts."""
        return [{k: v for k, v in row.items() if k not in ("spectrum", "cumulative")} for row in self.summary(eps)]

    def projector(self, model: nn.Module) -> "GradientProjector":
        return GradientProjector(model, {name: self.basis(name) for name in self.layers})


class LayerEnergy:
    """One layer's second-moment information, ``G = R R^T``, gathered batch by batch.

    While the layer has seen fewer columns than its input width ``d``, the
    columns themselves are kept (never more than ``d x d`` numbers, the size of
    ``G``); past that they are folded into a float64 Gram matrix. The
    decomposition then costs ``min(n, d)^3`` instead of ``d^3``, which matters
    for wide linear layers fed by a few hundred samples.
    """

    def __init__(self, dim: int, max_chunk_elements: int = 1 << 22):
        self.dim = dim
        self.columns = 0
        self.rows: list[torch.Tensor] = []
        self.gram: torch.Tensor | None = None
        self.max_chunk_elements = max_chunk_elements

    def add(self, rows: torch.Tensor) -> None:
        if rows.device.type == "mps":
            rows = rows.cpu()  # MPS has no float64, and the Gram is summed in float64
        self.columns += int(rows.shape[0])
        if self.gram is None and self.columns <= self.dim:
            self.rows.append(rows.clone())  # a copy: the rows may be a view of an activation changed in place later
            return
        if self.gram is None:
            self.gram = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=rows.device)
            for kept in self.rows:
                self._accumulate(kept)
            self.rows.clear()
        self._accumulate(rows)

    def _accumulate(self, rows: torch.Tensor) -> None:
        # Products of chunks of at most 2^22 entries in the rows' own precision (float32 is 3x faster than
        # float64 on CPU), each added to the float64 total: the rounding stays within one chunk and the
        # ranks match a float64 SVD (benchmarks/bench_unsc.py checks this). On the CPU, BLAS syrk fills only
        # the upper triangle, half the work of a full product; the lower one is mirrored when decomposing.
        step = max(1, self.max_chunk_elements // max(self.dim, 1))
        syrk = _cpu_syrk(rows)
        for start in range(0, rows.shape[0], step):
            chunk = rows[start:start + step]
            if syrk is not None:
                self.gram.numpy()[...] += syrk(1.0, chunk.contiguous().numpy().T, trans=0)
            else:
                self.gram += (chunk.T @ chunk).double()

    def full_gram(self) -> torch.Tensor:
        """``G`` as a full symmetric float64 matrix (float64 ``R^T R`` of the kept columns if it was never built)."""
        if self.gram is None:
            factor = self.factor()
            return factor @ factor.T
        return torch.triu(self.gram) + torch.triu(self.gram, 1).T

    def factor(self) -> torch.Tensor:
        """``F`` (``d x k``, float64) with ``F F^T = G``; ``k <= min(columns, d)``."""
        if self.gram is None:
            if not self.rows:
                return torch.zeros(self.dim, 0, dtype=torch.float64)
            return torch.cat(self.rows).T.double()
        values, vectors = decompose_gram(self.full_gram())
        return vectors * values.sqrt()

    def eigenpairs(self) -> Eigenpairs:
        """Descending nonzero eigenvalues of ``G``, eigenvectors on demand."""
        if self.gram is None:
            return factor_eigenpairs(self.factor())
        return gram_eigenpairs(self.full_gram())

    def decompose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Descending nonzero eigenvalues of ``G`` and all their eigenvectors ``(d, m)``."""
        pairs = self.eigenpairs()
        return pairs.values, pairs.vectors()


def _cpu_syrk(rows: torch.Tensor):
    """scipy's BLAS ``?syrk`` for float32/float64 CPU rows, else None (GPU: a plain product)."""
    if rows.device.type != "cpu" or rows.dtype not in (torch.float32, torch.float64):
        return None
    from scipy.linalg import blas

    return blas.ssyrk if rows.dtype == torch.float32 else blas.dsyrk


def _truncate(values: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values = values.clamp_min(0.0)
    total = float(values.sum())
    if total <= 0.0:
        return values[:0], vectors[:, :0]
    keep = int((values > total * ENERGY_TOLERANCE * 1e-3).sum())
    return values[:keep], vectors[:, :keep]


# Below this width a full eigendecomposition costs milliseconds: not worth a second LAPACK call.
LAZY_GRAM_DIM = 1024
# U = F V / sqrt(lambda) is orthonormal to about 1e-16 * lambda_max / lambda; above this ratio that is below
# float32's precision (the bases are used in float32), so no re-orthonormalisation is needed.
CONDITION_FOR_QR = 1e-8


def gram_eigenpairs(gram: torch.Tensor) -> Eigenpairs:
    """Eigenpairs of a symmetric PSD matrix, descending, numerically zero ones dropped.

    Wide CPU matrices get their eigenvalues alone first (``eigvalsh``, a
    fraction of a full ``eigh``) and only the leading eigenvectors when asked
    (LAPACK's ``syevr`` on an index range).
    """
    dim = gram.shape[0]
    if dim < LAZY_GRAM_DIM or gram.device.type != "cpu":
        values, vectors = torch.linalg.eigh(gram)
        values, vectors = _truncate(values.flip(0), vectors.flip(1))
        return Eigenpairs(values, lambda count: vectors[:, :count])
    values, _ = _truncate(torch.linalg.eigvalsh(gram).flip(0), gram[:, :0])

    def leading(count: int) -> torch.Tensor:
        if count == 0:
            return gram[:, :0]
        from scipy.linalg import eigh

        _, vectors = eigh(gram.numpy(), subset_by_index=[dim - count, dim - 1], driver="evr")
        return torch.from_numpy(np.ascontiguousarray(vectors[:, ::-1]))

    return Eigenpairs(values, leading)


def factor_eigenpairs(factor: torch.Tensor) -> Eigenpairs:
    """Eigenpairs of ``F F^T`` from ``F`` (``d x k``), through the smaller of ``F^T F`` and ``F F^T``."""
    dim, width = factor.shape
    if width == 0:
        return Eigenpairs(torch.zeros(0, dtype=factor.dtype, device=factor.device), lambda count: factor[:, :0])
    if width >= dim:
        return gram_eigenpairs(factor @ factor.T)
    values, right = torch.linalg.eigh(factor.T @ factor)
    values, right = _truncate(values.flip(0), right.flip(1))

    def leading(count: int) -> torch.Tensor:
        vectors = (factor @ right[:, :count]) / values[:count].sqrt()
        if count and float(values[count - 1]) < CONDITION_FOR_QR * float(values[0]):
            # One Gram-Schmidt pass removes the rounding that division by small singular values lets in.
            vectors, _ = torch.linalg.qr(vectors)
        return vectors

    return Eigenpairs(values, leading)


def decompose_gram(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of a symmetric PSD matrix, descending, numerically zero ones dropped (all vectors)."""
    pairs = gram_eigenpairs(gram)
    return pairs.values, pairs.vectors()


def decompose_factor(factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of ``F F^T`` from ``F`` (``d x k``), all vectors (see :func:`factor_eigenpairs`)."""
    pairs = factor_eigenpairs(factor)
    return pairs.values, pairs.vectors()


class GramAccumulator:
    """Forward pre-hooks that feed each tracked layer's representation columns to a :class:`LayerEnergy`."""

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module] | None = None):
        self.model = model
        self.layers = layers if layers is not None else tracked_layers(model)
        self.energy = {name: LayerEnergy(layer_input_dim(module)) for name, module in self.layers.items()}
        self._handles: list = []

    def _hook(self, name: str) -> Callable:
        def hook(module, inputs):
            self.energy[name].add(representation_rows(module, inputs[0].detach()))
        return hook

    def __enter__(self) -> "GramAccumulator":
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@torch.no_grad()
def accumulate_energy(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 256,
                      reporter: Reporter | None = None,
                      layers: dict[str, nn.Module] | None = None) -> dict[str, LayerEnergy]:
    """Every tracked layer's :class:`LayerEnergy` over raw ``images``, recorded in eval mode."""
    layers = layers if layers is not None else tracked_layers(model)
    was_training = model.training
    model.eval()
    accumulator = GramAccumulator(model, layers)
    steps = max(1, -(-len(images) // batch_size))
    try:
        with accumulator:
            for step, start in enumerate(range(0, len(images), batch_size), start=1):
                model(to_float(images[start:start + batch_size]).to(device))
                if reporter is not None:
                    reporter(step=step, steps=steps)
    finally:
        model.train(was_training)
    return accumulator.energy


def make_spectrum(name: str, module: nn.Module, pairs: Eigenpairs, columns: int) -> LayerSpectrum:
    """A :class:`LayerSpectrum` from descending nonzero eigenpairs (eigenvalues zero-padded to ``d``)."""
    dim = layer_input_dim(module)
    eigenvalues = np.zeros(dim)
    eigenvalues[:len(pairs)] = pairs.values.cpu().numpy()
    kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
    return LayerSpectrum(name, kind, dim, eigenvalues, pairs, columns)


def sample_per_class(labels: torch.Tensor | np.ndarray, indices: np.ndarray, per_class: int,
                     seed: int) -> dict[int, np.ndarray]:
    """Up to ``per_class`` of ``indices`` for every class present (all if ``per_class`` <= 0), seeded, sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen: dict[int, np.ndarray] = {}
    for cls in np.unique(labels[indices]):
        members = np.sort(indices[labels[indices] == cls])
        if 0 < per_class < len(members):
            members = np.sort(rng.choice(members, per_class, replace=False))
        chosen[int(cls)] = members
    return chosen


def build_retained_space(model: nn.Module, images: torch.Tensor, eps: float = 0.99, device=None,
                         batch_size: int = 256, reporter: Reporter | None = None) -> RetainedSpace:
    """The pooled form: one basis per layer from all of ``images`` (remaining data, raw ``uint8``)."""
    rank_for_energy(np.ones(1), eps)
    device = device or next(model.parameters()).device
    started = time.perf_counter()
    layers = tracked_layers(model)
    energy = accumulate_energy(model, images, device, batch_size, reporter, layers)
    spectra = {}
    for name, module in layers.items():
        spectra[name] = make_spectrum(name, module, energy[name].eigenpairs(), energy[name].columns)
    return RetainedSpace(spectra, eps, len(images), time.perf_counter() - started, info={"form": "pooled"})


# ---- the incremental (per-class, GPM) form -------------------------------------------------------------


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


# ---- gradient projection -------------------------------------------------------------------------------


class GradientProjector:
    """``P = U U^T`` per layer, keyed by the module itself; projects gradients out of the retained space.

    ``projection_matrix(module)`` gives ``P`` explicitly; internally the cheaper of ``U`` and ``P`` is kept.
    """

    def __init__(self, model: nn.Module, bases: dict[str, torch.Tensor]):
        layers = tracked_layers(model)
        missing = set(layers) - set(bases)
        if missing:
            raise MethodError(f"no retained basis for layer(s) {', '.join(sorted(missing))}")
        self.names: dict[nn.Module, str] = {}
        # Either ("basis", U) or ("projector", U U^T), whichever multiplies faster: g U U^T costs 2*r*d per row,
        # g P costs d*d.
        self.operators: dict[nn.Module, tuple[str, torch.Tensor]] = {}
        for name, module in layers.items():
            basis = bases[name].to(module.weight.device, module.weight.dtype)
            if basis.shape[0] != layer_input_dim(module):
                raise MethodError(f"basis of layer {name!r} has {basis.shape[0]} rows, the layer takes "
                                  f"{layer_input_dim(module)} inputs")
            if 2 * basis.shape[1] < basis.shape[0]:
                self.operators[module] = ("basis", basis)
            else:
                self.operators[module] = ("projector", basis @ basis.T)
            self.names[module] = name
        self.model = model

    def projection_matrix(self, module: nn.Module) -> torch.Tensor:
        kind, matrix = self.operators[module]
        return matrix @ matrix.T if kind == "basis" else matrix

    @staticmethod
    def _retained_part(flat: torch.Tensor, operator: tuple[str, torch.Tensor]) -> torch.Tensor:
        kind, matrix = operator
        return (flat @ matrix) @ matrix.T if kind == "basis" else flat @ matrix

    def removed_share(self) -> dict[str, float]:
        """Per layer, the share of the current weight gradient's squared norm that projection removes."""
        shares = {}
        for module, operator in self.operators.items():
            grad = module.weight.grad
            if grad is None:
                continue
            flat = grad.reshape(grad.shape[0], -1)
            total = float((flat ** 2).sum())
            removed = float((self._retained_part(flat, operator) ** 2).sum())
            shares[self.names[module]] = removed / total if total > 0 else 0.0
        return shares

    @torch.no_grad()
    def project(self, model: nn.Module | None = None) -> None:
        """Remove the retained-space component of every layer weight's gradient; zero all 1-D gradients."""
        model = model or self.model
        for module, operator in self.operators.items():
            grad = module.weight.grad
            if grad is not None:
                flat = grad.view(grad.shape[0], -1)
                flat.sub_(self._retained_part(flat, operator))
        for parameter in model.parameters():
            if parameter.grad is not None and parameter.grad.dim() <= 1:
                parameter.grad.zero_()

    __call__ = project


@torch.no_grad()
def preactivation_drift(before: nn.Module, after: nn.Module, images: torch.Tensor, device=None,
                        batch_size: int = 512) -> dict[str, float]:
    """Per layer, ``||out_after - out_before|| / ||out_before||`` of the layer outputs on ``images``, eval mode.

    Both models must have the same architecture; layers are matched by qualified name.
    """
    device = device or next(after.parameters()).device
    current: dict[str, torch.Tensor] = {}
    squared_diff: dict[str, float] = {}
    squared_old: dict[str, float] = {}

    def keep_before(name: str) -> Callable:
        def hook(module, inputs, output):
            # A copy: an in-place activation after the layer would otherwise rewrite what we keep.
            current[name] = output.detach().float().clone()
        return hook

    def compare_after(name: str) -> Callable:
        def hook(module, inputs, output):
            old = current.pop(name)
            squared_diff[name] = squared_diff.get(name, 0.0) + float(((output.detach().float() - old) ** 2).sum())
            squared_old[name] = squared_old.get(name, 0.0) + float((old ** 2).sum())
        return hook

    handles = [module.register_forward_hook(keep_before(name)) for name, module in tracked_layers(before).items()]
    handles += [module.register_forward_hook(compare_after(name)) for name, module in tracked_layers(after).items()]
    modes = (before.training, after.training)
    before.eval()
    after.eval()
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size]).to(device)
            before(x)
            after(x)
    finally:
        for handle in handles:
            handle.remove()
        before.train(modes[0])
        after.train(modes[1])
    return {name: (squared_diff[name] / squared_old[name]) ** 0.5 if squared_old[name] > 0
            else squared_diff[name] ** 0.5 for name in squared_diff}
