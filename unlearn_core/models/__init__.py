"""Model registry: classifiers that take raw [0, 1] images of any size.

Every model is an :class:`UnlearnModel`: a :class:`Normalize` layer, a
feature extractor ``body`` and a final linear ``head``. ``features(x)``
returns the penultimate representation (for the embedding views) and
``forward(x) = head(features(x))``. Normalisation lives inside the model so
pixel-space methods (NatMU) and uploaded checkpoints need no extra state.

Registered: ``small_cnn`` (default for 28x28), ``mlp``, ``allcnn``,
``resnet18`` (CIFAR stem) and ``vgg11_bn``.

Two modules: :mod:`~unlearn_core.models.registry` (names, descriptions, :func:`register_model`; no torch) and
:mod:`~unlearn_core.models.nets` (the networks and building them; torch). Importing this package loads only the
registry; the torch names load on first use.
"""

from __future__ import annotations

from unlearn_core.lazy import lazy_names
from unlearn_core.models.registry import MODELS, Builder, ModelInfo, register_model

#: Names served by :mod:`unlearn_core.models.nets`, imported (with torch) when first asked for.
TORCH_NAMES = ("BasicBlock", "Normalize", "UnlearnModel", "build_for_dataset", "build_model", "count_parameters",
               "reinit_head", "seeded_init")

__all__ = ["MODELS", "Builder", "ModelInfo", "register_model", *TORCH_NAMES]

__getattr__ = lazy_names(globals(), "unlearn_core.models.nets", TORCH_NAMES)
