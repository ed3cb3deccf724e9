"""Images and predictions as the pages show them: thumbnails, softmax outputs, entropies, model sizes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def predictions(model, images: torch.Tensor, device=None) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted class, softmax)`` for raw images."""
    import torch

    from unlearn_core.training import predict_logits

    probs = torch.softmax(predict_logits(model, images, device), dim=1).numpy()
    return probs.argmax(1), probs


def entropy_groups(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Prediction entropy of the forget, remaining and test outputs (what the entropy MIA sees)."""
    from unlearn_core.metrics import entropy

    return {name: entropy(outputs[name]) for name in ("forget", "retain", "test") if name in outputs}


def to_display(images: torch.Tensor | np.ndarray, scale: int = 1) -> list[np.ndarray]:
    """Raw ``(N, C, H, W)`` ``uint8`` images to ``(H, W)`` / ``(H, W, 3)`` arrays for ``st.image``, upscaled."""
    array = np.asarray(images)  # a CPU tensor's memory, or the array itself
    out = []
    for image in array:
        picture = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
        if scale > 1:
            picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
        out.append(np.ascontiguousarray(picture.astype(np.uint8)))
    return out


def image_strip(pictures: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """Thumbnails of one size (from :func:`to_display`) side by side in one RGBA image, ``gap`` transparent pixels
    apart: one image to encode and fetch instead of one per thumbnail (the Setup gallery's 60 thumbnails took
    0.45 s of its first script run as separate images)."""
    if not pictures:
        raise ValueError("no pictures for a strip")
    rgba = []
    for picture in pictures:
        rgb = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture
        rgba.append(np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2))
    height, width = rgba[0].shape[:2]
    strip = np.zeros((height, len(rgba) * width + (len(rgba) - 1) * gap, 4), np.uint8)
    for i, picture in enumerate(rgba):
        strip[:, i * (width + gap):i * (width + gap) + width] = picture
    return strip


def display_scale(image_size: tuple[int, int], target: int = 56) -> int:
    """An integer upscale so tiny images (8x8 digits) are visible as thumbnails."""
    return max(1, int(math.ceil(target / max(image_size))))


def gallery_indices(labels: np.ndarray, per_class: int, seed: int = 0) -> dict[int, np.ndarray]:
    """A few training indices per class for the Setup page's gallery."""
    rng = np.random.default_rng(seed)
    out = {}
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        out[int(cls)] = np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return out


def model_size(model) -> dict:
    """Parameter count and size in MiB of the float32 weights."""
    from unlearn_core.models import count_parameters

    params = count_parameters(model)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {"parameters": int(params), "mib": size / 2**20}

