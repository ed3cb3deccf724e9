"""Pictures of NatMU's masks."""

from __future__ import annotations

import numpy as np


def framed_mask(mask: np.ndarray, scale: int = 1, frame: int = 2) -> np.ndarray:
    """A ``[0, 1]`` mask as an upscaled ``uint8`` picture inside a grey frame.

    At delta = 1 every mask is all white: without a frame it vanishes into a white page.
    """
    picture = np.repeat(np.repeat((np.clip(mask, 0, 1) * 255).astype(np.uint8), scale, 0), scale, 1)
    return np.pad(picture, frame, constant_values=128)
