"""The retained subspace of every layer and the null-space gradient projection (UNSC).

For each ``nn.Conv2d`` and ``nn.Linear`` layer, the inputs the layer receives
on remaining data span a subspace; a weight update orthogonal to it leaves the
layer's pre-activations on that data unchanged. This package finds those
subspaces (``spectrum``, ``incremental``) and projects gradients out of them
(``projection``); ``layers`` says which layers count.

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

from unlearn_core.nullspace.constants import ENERGY_TOLERANCE, NULLSPACE_CACHE_VERSION
from unlearn_core.nullspace.layers import layer_input_dim, representation_rows, tracked_layers
from unlearn_core.nullspace.spectrum import (CONDITION_FOR_QR, Eigenpairs, GramAccumulator, LAZY_GRAM_DIM,
                                             LayerEnergy, LayerSpectrum, RetainedSpace, accumulate_energy,
                                             build_retained_space, decompose_factor, decompose_gram,
                                             factor_eigenpairs, gram_eigenpairs, make_spectrum, rank_for_energy,
                                             sample_per_class)
from unlearn_core.nullspace.incremental import class_factors, gpm_merge, incremental_space, model_fingerprint
from unlearn_core.nullspace.projection import GradientProjector, preactivation_drift

__all__ = [
    'CONDITION_FOR_QR', 'Eigenpairs', 'GradientProjector', 'GramAccumulator', 'LAZY_GRAM_DIM', 'LayerEnergy',
    'LayerSpectrum', 'RetainedSpace', 'accumulate_energy', 'build_retained_space', 'class_factors',
    'decompose_factor', 'decompose_gram', 'factor_eigenpairs', 'gpm_merge', 'gram_eigenpairs', 'incremental_space',
    'layer_input_dim', 'make_spectrum', 'model_fingerprint', 'preactivation_drift', 'rank_for_energy',
    'representation_rows', 'sample_per_class', 'tracked_layers', 'NULLSPACE_CACHE_VERSION', 'ENERGY_TOLERANCE'
]
