"""A data set as torch tensors (:class:`DatasetBundle`) and the pixel operations training uses on them."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from unlearn_core import paths
from unlearn_core.data.sources import (DEFAULT_DATASET, DEFAULT_IMAGE_SIZE, DatasetArrays, ImageSet,
                                       checked_name, image_folder_arrays, load_arrays)


@dataclass
class DatasetBundle(ImageSet[torch.Tensor]):
    """A data set held in memory as torch tensors (:class:`~unlearn_core.data.sources.ImageSet`)."""

    @classmethod
    def from_arrays(cls, arrays: DatasetArrays) -> "DatasetBundle":
        """The same data as tensors that share the arrays' memory (no copy)."""
        values = {f.name: getattr(arrays, f.name) for f in fields(arrays)}
        for name, value in values.items():
            if isinstance(value, np.ndarray):
                values[name] = torch.from_numpy(value)
        return cls(**values)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Raw ``uint8`` pixels to ``float32`` in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def augment_batch(images: torch.Tensor, augmentation: str, padding: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding) and, for ``crop_flip``, horizontal flips.

    Works on a float batch on any device, vectorised over the batch.
    """
    if augmentation == "none" or images.numel() == 0:
        return images
    batch, channels, height, width = images.shape
    out = images
    if padding > 0:
        padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator).to(images.device)
        rows = offsets[0][:, None] + torch.arange(height, device=images.device)[None, :]
        cols = offsets[1][:, None] + torch.arange(width, device=images.device)[None, :]
        out = padded[torch.arange(batch, device=images.device)[:, None, None, None],
                     torch.arange(channels, device=images.device)[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]
    if augmentation == "crop_flip":
        flip = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


def load_image_folder(path: str, size: int = DEFAULT_IMAGE_SIZE, root: Path | None = None) -> DatasetBundle:
    """:func:`~unlearn_core.data.sources.image_folder_arrays` as tensors."""
    return DatasetBundle.from_arrays(image_folder_arrays(path, size, root))


_cache_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _cached_load(name: str, data_root: str, image_root: str) -> DatasetBundle:
    return DatasetBundle.from_arrays(load_arrays(name))


def load_dataset(name: str = DEFAULT_DATASET) -> DatasetBundle:
    """Load a data set by name (cached in-process; treat the result as read-only). Its tensors share memory with
    :func:`~unlearn_core.data.load_arrays`'s arrays."""
    name = checked_name(name)
    with _cache_lock:
        return _cached_load(name, str(paths.data_dir()), str(paths.image_root()))
