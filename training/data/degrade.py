"""Low-resolution inputs the way the evaluation protocol makes them (Pillow bicubic)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def bicubic_downsample(hr_uint8: np.ndarray, scale: int) -> np.ndarray:
    """H×W×3 uint8 -> (H//scale)×(W//scale)×3 uint8 with ``Image.resize(..., Image.BICUBIC)``."""
    hr = np.asarray(hr_uint8)
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"expected H×W×3 uint8, got {hr.dtype} {hr.shape}")
    height, width = hr.shape[:2]
    image = Image.fromarray(hr, mode="RGB")
    return np.asarray(image.resize((width // scale, height // scale), Image.BICUBIC))
