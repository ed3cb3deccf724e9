"""Subspaces that projection-based unlearning methods keep or remove, and how much they overlap.

Three methods act on the inputs a ``Conv2d``/``Linear`` layer receives (for a
conv layer, its unfolded patches; :mod:`unlearn_core.nullspace`):

* **UNSC** keeps the retained space: the top eigenvectors ``U_r(eps)`` of the
  remaining data's input Gram ``G_r = R_r R_r^T`` that hold a share ``eps`` of
  its energy. Its updates are orthogonal to that space.
* **SVD class forgetting** (Kodge, Saha, Roy, TMLR 2024; release
  ``sangamesh-kodge/class_forgetting``, ``forward_cache_projections`` and
  ``get_projection_matrix``) scales each left singular vector ``u_i`` of an
  activation matrix by its energy share ``s_i = sigma_i^2 / sum_j sigma_j^2``:
  ``lambda_i = alpha s_i / ((alpha - 1) s_i + 1)`` and ``M = U diag(lambda) U^T``
  (``alpha`` -> infinity gives the projection onto the span; ``alpha = 1``
  weights by ``s_i``). With ``M_f`` from forget and ``M_r`` from remaining
  activations, the weights become ``W P^T`` with ``P = I - (M_f - M_f M_r)``.
  A layer input ``x`` therefore loses ``D^T x`` with
  ``D = M_f - M_f M_r = M_f (I - M_r)``: the *class-discriminatory*
  directions are the left singular vectors ``q_i`` of ``D``, and its singular
  value ``sigma_i = ||D^T q_i||`` is how much of a unit input along ``q_i``
  is suppressed. At a threshold ``tau`` the removed subspace is
  ``{q_i : sigma_i >= tau}``.
* **ESC** (Lee et al., CVPR 2025; release ``KU-VGI/ESC``, ``unlearn.py``)
  erases the top ``k = int(d p / 100)`` left singular vectors of the forget
  samples' penultimate features (the head's input): ``f -> (I - U_k U_k^T) f``.

Overlap between subspaces with orthonormal bases ``A`` (``d x p``) and ``B``
(``d x q``): the principal angles ``theta_i = arccos sigma_i(A^T B)``,
``i <= min(p, q)`` (Bjorck and Golub 1973), and the share of ``span(A)``'s
energy inside ``span(B)``, ``||B^T A||_F^2 / p`` (the mean of ``cos^2`` over
all ``p`` directions of ``A``; 1 when ``span(A)`` lies in ``span(B)``, 0 when
orthogonal). The share of a data set's energy in a subspace weighs each of its
Gram eigenvectors by its eigenvalue: ``tr(B^T G B) / tr(G)``.

:func:`build_comparison` gathers every layer's remaining and forget Gram
matrices once (:func:`unlearn_core.nullspace.accumulate_energy`); a
:class:`SubspaceComparison` then answers any eps, alpha, tau or p without new
forward passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unlearn_core.errors import MethodError, ParameterError
from unlearn_core.jsonsafe import finite_or_none
from unlearn_core.nullspace import LayerSpectrum, accumulate_energy, make_spectrum, tracked_layers
from unlearn_core.progress import Reporter

# Singular values below this share of the largest one are rank-deficient noise in a basis.
RANK_TOLERANCE = 1e-8


def orthonormal_columns(matrix: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (``d x r``, float64) of the column span of ``matrix`` (rank from its SVD)."""
    matrix = torch.as_tensor(matrix).double()
    if matrix.ndim != 2:
        raise MethodError(f"a subspace basis must be a matrix, got shape {tuple(matrix.shape)}")
    if matrix.shape[1] == 0:
        return matrix
    u, s, _ = torch.linalg.svd(matrix, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return matrix[:, :0]
    keep = int((s > RANK_TOLERANCE * s[0]).sum())
    return u[:, :keep]


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Principal angles in radians, ascending, between ``span(a)`` and ``span(b)``.

    ``cos theta_i = sigma_i(Q_a^T Q_b)`` with ``Q_a``, ``Q_b`` orthonormal bases
    of the two spans; there are ``min(rank a, rank b)`` of them (none when
    either span is ``{0}``).
    """
    qa, qb = orthonormal_columns(a), orthonormal_columns(b)
    _check_dims(qa, qb)
    if qa.shape[1] == 0 or qb.shape[1] == 0:
        return np.zeros(0)
    cosines = torch.linalg.svdvals(qa.T @ qb).clamp(0.0, 1.0).cpu().numpy()
    return np.sort(np.arccos(cosines))


def energy_share(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of ``span(a)``'s energy inside ``span(b)``: ``||Q_b^T Q_a||_F^2 / rank(a)`` (NaN if ``a`` spans {0})."""
    qa, qb = orthonormal_columns(a), orthonormal_columns(b)
    _check_dims(qa, qb)
    if qa.shape[1] == 0:
        return float("nan")
    if qb.shape[1] == 0:
        return 0.0
    return float(((qb.T @ qa) ** 2).sum()) / qa.shape[1]


def data_energy_share(values: torch.Tensor, vectors: torch.Tensor, b: torch.Tensor) -> float:
    """Share of the energy of ``G = V diag(values) V^T`` inside ``span(b)``: ``tr(Q_b^T G Q_b) / tr(G)``.

    ``values`` are ``G``'s eigenvalues (the squared singular values of the data
    matrix), ``vectors`` its orthonormal eigenvectors. NaN when ``G = 0``.
    """
    values = torch.as_tensor(values).double().clamp_min(0.0)
    total = float(values.sum())
    if total <= 0.0:
        return float("nan")
    qb = orthonormal_columns(b)
    _check_dims(torch.as_tensor(vectors).double(), qb)
    if qb.shape[1] == 0:
        return 0.0
    inside = ((qb.T @ torch.as_tensor(vectors).double()) ** 2).sum(0)
    return float((values * inside).sum()) / total


def _check_dims(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise MethodError(f"subspaces live in spaces of different dimension ({a.shape[0]} and {b.shape[0]})")


# ---- SVD class forgetting (Kodge et al.) ---------------------------------------------------------------


def scaled_importance(squared_singular_values: torch.Tensor, alpha: float) -> torch.Tensor:
    """``lambda_i = alpha s_i / ((alpha - 1) s_i + 1)`` with ``s_i = sigma_i^2 / sum_j sigma_j^2``.

    The release's ``forward_cache_projections`` scaling (its ``importance_r``).
    ``alpha`` must be positive; every ``lambda_i`` lies in ``[0, 1]``.
    """
    if not alpha > 0:
        raise ParameterError(f"alpha must be positive, got {alpha}")
    energy = torch.as_tensor(squared_singular_values).double().clamp_min(0.0)
    total = float(energy.sum())
    if total <= 0.0:
        return torch.zeros_like(energy)
    share = energy / total
    return alpha * share / ((alpha - 1.0) * share + 1.0)


def scaled_projection(vectors: torch.Tensor, squared_singular_values: torch.Tensor, alpha: float) -> torch.Tensor:
    """``M = U diag(lambda) U^T`` (dense ``d x d``, float64); see :func:`scaled_importance`."""
    u = torch.as_tensor(vectors).double()
    lam = scaled_importance(squared_singular_values, alpha).to(u.device)
    return (u * lam) @ u.T


def svd_forget_projection(m_forget: torch.Tensor, m_retain: torch.Tensor) -> torch.Tensor:
    """``P = I - (M_f - M_f M_r)``, the release's ``get_projection_matrix``; weights become ``W P^T``."""
    eye = torch.eye(m_forget.shape[0], dtype=m_forget.dtype, device=m_forget.device)
    return eye - (m_forget - m_forget @ m_retain)


def svd_forget_weight(weight: torch.Tensor, u_forget: torch.Tensor, lam_forget: torch.Tensor,
                      u_retain: torch.Tensor, lam_retain: torch.Tensor) -> torch.Tensor:
    """``W P^T`` for ``P = I - M_f + M_f M_r`` in low-rank form, without any ``d x d`` matrix.

    ``W`` is ``(out, d)``; ``M_f = U_f diag(lam_f) U_f^T`` and likewise ``M_r``.
    ``W P^T = W - (W U_f) diag(lam_f) U_f^T + (W U_r) diag(lam_r) (U_r^T U_f) diag(lam_f) U_f^T``,
    computed in float64 on the bases' device (the CPU for an MPS model, which has no float64) and
    returned on ``weight``'s device in its dtype.
    """
    work = u_forget.device
    w = weight.detach().to(work, torch.float64)
    uf, ur = u_forget.double(), u_retain.double().to(work)
    lf, lr = lam_forget.double().to(work), lam_retain.double().to(work)
    forget_part = (w @ uf) * lf
    overlap = ((w @ ur) * lr) @ (ur.T @ uf) * lf
    return (w - (forget_part - overlap) @ uf.T).to(weight.device, weight.dtype)


def discriminatory_directions(u_forget: torch.Tensor, lam_forget: torch.Tensor, u_retain: torch.Tensor,
                              lam_retain: torch.Tensor, tau: float = 0.5) -> tuple[torch.Tensor, np.ndarray]:
    """The input directions SVD class forgetting suppresses by at least ``tau``, and how strongly.

    ``D = M_f (I - M_r) = U_f K`` with ``K = diag(lam_f) U_f^T (I - M_r)``. The
    left singular vectors of ``D`` are ``U_f A`` and its singular values ``S``
    for the eigenpairs ``K K^T = A S^2 A^T``; with ``C = U_f^T U_r`` and
    ``(I - M_r)^2 = I - U_r diag(2 lam_r - lam_r^2) U_r^T`` that small matrix is
    ``diag(lam_f) (I - C diag(2 lam_r - lam_r^2) C^T) diag(lam_f)``, so no
    ``d``-wide decomposition is needed. Returns the ``(d, r)`` basis of the
    directions with ``S >= tau`` and all singular values, descending.
    """
    if not 0.0 < tau <= 1.0:
        raise ParameterError(f"tau must be in (0, 1], got {tau}")
    uf, ur = u_forget.double(), u_retain.double().to(u_forget.device)
    lf, lr = lam_forget.double().to(uf.device), lam_retain.double().to(uf.device)
    if uf.shape[1] == 0:
        return uf, np.zeros(0)
    c = uf.T @ ur
    inner = torch.eye(uf.shape[1], dtype=uf.dtype, device=uf.device) - (c * (2 * lr - lr ** 2)) @ c.T
    values, vectors = torch.linalg.eigh(lf[:, None] * inner * lf[None, :])
    values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
    strengths = values.sqrt()
    keep = int((strengths >= tau).sum())
    return uf @ vectors[:, :keep], strengths.cpu().numpy()


def removed_directions(operator: torch.Tensor, tau: float = 0.5) -> tuple[torch.Tensor, np.ndarray]:
    """For an input map ``x -> T x`` (``d x d``), the directions it suppresses by at least ``tau``.

    The removed part is ``(I - T) x``; the right singular vectors ``v_i`` of
    ``I - T`` with ``sigma_i >= tau`` span the inputs losing at least ``tau`` of
    their length. For an orthogonal projection ``T`` they are exactly the
    complement of its range (``sigma = 1``). Returns the basis and all singular values.
    """
    if not 0.0 < tau <= 1.0:
        raise ParameterError(f"tau must be in (0, 1], got {tau}")
    t = torch.as_tensor(operator).double()
    residual = torch.eye(t.shape[0], dtype=t.dtype, device=t.device) - t
    _, s, vh = torch.linalg.svd(residual)
    keep = int((s >= tau).sum())
    return vh[:keep].T, s.cpu().numpy()


# ---- ESC (Lee et al.) ----------------------------------------------------------------------------------


def esc_prune_count(dim: int, p: float) -> int:
    """ESC's number of erased directions, ``int(d p / 100)`` (the release's ``prune_k``)."""
    if not 0.0 <= p <= 100.0:
        raise ParameterError(f"p must be in [0, 100], got {p}")
    return int(dim * p / 100)


def left_singular_basis(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full left singular basis of ``F^T`` for features ``F`` (``n x d``): ``U`` (``d x d``) and ``sigma`` (padded).

    The complete ``d x d`` basis, also when ``n < d`` (the directions beyond
    the features' span then carry ``sigma = 0``), in float64.
    """
    feats = torch.as_tensor(features).double()
    u, s, _ = torch.linalg.svd(feats.T, full_matrices=True)
    sigma = torch.zeros(u.shape[0], dtype=s.dtype, device=s.device)
    sigma[:s.numel()] = s
    return u, sigma


# ---- the per-layer comparison --------------------------------------------------------------------------


@dataclass
class LayerPair:
    """One layer's remaining-data and forget-data spectra (eigenpairs of their input Grams)."""

    name: str
    kind: str
    input_dim: int
    retain: LayerSpectrum
    forget: LayerSpectrum


@dataclass
class SubspaceComparison:
    """Every tracked layer's remaining and forget spectra, from one pass over each data set.

    ``head`` names the layer fed by the penultimate features (where ESC acts).
    All queries below reuse the stored eigenpairs: no forward pass, no new Gram.
    """

    layers: dict[str, LayerPair]
    head: str
    retain_samples: int
    forget_samples: int

    def _pair(self, layer: str) -> LayerPair:
        if layer not in self.layers:
            raise MethodError(f"no layer {layer!r}; the model's layers are {', '.join(self.layers)}")
        return self.layers[layer]

    def unsc_retained(self, layer: str, eps: float) -> torch.Tensor:
        """UNSC's retained basis ``U_r(eps)`` (pooled form, :meth:`LayerSpectrum.basis`)."""
        return self._pair(layer).retain.basis(eps).double()

    def svd_forget_removed(self, layer: str, alpha_f: float = 3.0, alpha_r: float = 100.0,
                           tau: float = 0.5) -> tuple[torch.Tensor, np.ndarray]:
        """SVD class forgetting's discriminatory directions at ``tau`` (:func:`discriminatory_directions`)."""
        pair = self._pair(layer)
        uf, ur = pair.forget.pairs.vectors().double(), pair.retain.pairs.vectors().double()
        lam_f = scaled_importance(pair.forget.pairs.values, alpha_f)
        lam_r = scaled_importance(pair.retain.pairs.values, alpha_r)
        return discriminatory_directions(uf, lam_f, ur, lam_r, tau)

    def esc_erased(self, p: float = 1.5) -> torch.Tensor:
        """ESC's erased basis at the head's input: the top ``int(d p / 100)`` forget feature directions."""
        forget = self._pair(self.head).forget
        k = min(esc_prune_count(forget.input_dim, p), len(forget.pairs))
        return forget.pairs.vectors(k).double()

    def rows(self, eps: float = 0.99, alpha_f: float = 3.0, alpha_r: float = 100.0, tau: float = 0.5,
             esc_p: float = 1.5) -> list[dict]:
        """Per layer, each method's subspace rank and the overlaps (plain numbers, JSON-able).

        Keys: ``unsc_rank``/``unsc_null_dim`` (retained space at ``eps``),
        ``svd_rank`` (discriminatory directions at ``tau``), ``svd_in_unsc``
        (share of their span inside UNSC's retained space), ``svd_angles_deg``
        (principal angles to it), ``svd_retain_energy``/``svd_forget_energy``
        (share of the remaining / forget data's input energy in the span);
        on the head layer also ``esc_rank``, ``esc_in_unsc``,
        ``esc_retain_energy``, ``esc_forget_energy`` and ``esc_svd_angles_deg``
        (ESC's erased span against the SVD method's); ``None`` where a
        quantity is undefined (an empty span).
        """
        out = []
        for name, pair in self.layers.items():
            retained = self.unsc_retained(name, eps)
            svd_basis, strengths = self.svd_forget_removed(name, alpha_f, alpha_r, tau)
            row = {"layer": name, "kind": pair.kind, "input_dim": pair.input_dim,
                   "unsc_rank": int(retained.shape[1]), "unsc_null_dim": pair.input_dim - int(retained.shape[1]),
                   "svd_rank": int(svd_basis.shape[1]),
                   "svd_strengths": [float(v) for v in strengths[:max(int(svd_basis.shape[1]), 1)]]}
            row.update(self._overlaps("svd", svd_basis, retained, pair))
            if name == self.head:
                esc_basis = self.esc_erased(esc_p)
                row["esc_rank"] = int(esc_basis.shape[1])
                row.update(self._overlaps("esc", esc_basis, retained, pair))
                row["esc_svd_angles_deg"] = _degrees(principal_angles(esc_basis, svd_basis))
            out.append(row)
        return out

    @staticmethod
    def _overlaps(prefix: str, basis: torch.Tensor, retained: torch.Tensor, pair: LayerPair) -> dict:
        empty = basis.shape[1] == 0
        return {
            f"{prefix}_in_unsc": None if empty else energy_share(basis, retained),
            f"{prefix}_angles_deg": _degrees(principal_angles(basis, retained)),
            f"{prefix}_retain_energy": None if empty else finite_or_none(
                data_energy_share(pair.retain.pairs.values, pair.retain.pairs.vectors(), basis)),
            f"{prefix}_forget_energy": None if empty else finite_or_none(
                data_energy_share(pair.forget.pairs.values, pair.forget.pairs.vectors(), basis)),
        }


def _degrees(angles: np.ndarray) -> list[float]:
    return [float(math.degrees(a)) for a in angles]


def head_layer_name(model: nn.Module) -> str:
    """The tracked layer fed by the penultimate features: ``head`` of an UnlearnModel, else the last layer."""
    layers = tracked_layers(model)
    head = getattr(model, "head", None)
    for name, module in layers.items():
        if module is head:
            return name
    return list(layers)[-1]


def build_comparison(model: nn.Module, retain_images: torch.Tensor, forget_images: torch.Tensor, device=None,
                     batch_size: int = 256, reporter: Reporter | None = None) -> SubspaceComparison:
    """Record every tracked layer's input Gram on remaining and forget images (raw ``uint8``), in eval mode.

    The remaining images should be those UNSC and the SVD method would use
    (e.g. :func:`unlearn_core.nullspace.sample_per_class`, 100 per class for
    both at their defaults); ESC uses every forget sample.
    """
    if len(retain_images) == 0 or len(forget_images) == 0:
        raise MethodError("the subspace comparison needs both remaining and forget images")
    device = device or next(model.parameters()).device
    layers = tracked_layers(model)
    retain = accumulate_energy(model, retain_images, device, batch_size,
                               reporter.child("remaining inputs") if reporter else None, layers)
    forget = accumulate_energy(model, forget_images, device, batch_size,
                               reporter.child("forget inputs") if reporter else None, layers)
    pairs = {}
    for name, module in layers.items():
        r = make_spectrum(name, module, retain[name].eigenpairs(), retain[name].columns)
        f = make_spectrum(name, module, forget[name].eigenpairs(), forget[name].columns)
        pairs[name] = LayerPair(name, r.kind, r.input_dim, r, f)
    return SubspaceComparison(pairs, head_layer_name(model), len(retain_images), len(forget_images))
