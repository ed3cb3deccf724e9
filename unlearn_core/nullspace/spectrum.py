"""Retained spaces from Gram matrices: spectra, ranks for an energy threshold, and their construction."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from unlearn_core.data import to_float
from unlearn_core.errors import MethodError
from unlearn_core.progress import Reporter
from unlearn_core.nullspace.layers import layer_input_dim, representation_rows, tracked_layers
from unlearn_core.nullspace.projection import GradientProjector
from unlearn_core.nullspace.constants import ENERGY_TOLERANCE


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
