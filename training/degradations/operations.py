"""The degradation operations, one function each, on H×W×3 float32 images in [0, 255].

Float in, float out, so a chain quantises only where a real pipeline does: ``to_uint8`` after
each stage's last step and inside ``jpeg`` (a file holds bytes). Random draws come from the
``np.random.Generator`` passed in, never from global state.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

# Interpolation per resize mode. "area" is OpenCV's pixel-area averaging (what phones and
# browsers use to shrink); "bilinear" is OpenCV's plain bilinear (no anti-aliasing, as in many
# naive resizers); "bicubic" is Pillow's anti-aliased bicubic, the evaluation protocol's.
RESIZE_MODES = ("area", "bilinear", "bicubic")
_PIL_BICUBIC = Image.Resampling.BICUBIC


def to_float(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round half up and clip: the one quantisation a stage ends with."""
    return np.clip(np.floor(image + 0.5), 0, 255).astype(np.uint8)


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with ``kernel`` (reflected borders, as a camera sees beyond the crop)."""
    return cv2.filter2D(to_float(image), -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def resize(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """To ``size`` = (width, height) with interpolation ``mode`` (one of RESIZE_MODES)."""
    image = to_float(image)
    if mode == "bicubic":
        # Pillow's float mode works per channel; bicubic here is exactly the protocol's filter.
        channels = [
            np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F").resize(size, _PIL_BICUBIC))
            for c in range(image.shape[2])
        ]
        return np.stack(channels, axis=-1)
    if mode == "area":
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if mode == "bilinear":
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {mode!r}")


def gaussian_noise(image: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, σ²) (σ in 0–255 units): one field for all channels if ``gray``, else one each."""
    shape = image.shape[:2] + ((1,) if gray else (image.shape[2],))
    return to_float(image) + rng.normal(0.0, sigma, size=shape).astype(np.float32)


def poisson_noise(image: np.ndarray, scale: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Shot noise after Real-ESRGAN: Poisson counts at the image's level count, times ``scale``.

    The levels are the number of distinct values rounded up to a power of two (256 for a
    natural 8-bit image), so noise variance is proportional to brightness: var = scale²·I·255/levels.
    """
    image = to_float(image)
    unit = np.clip(image / 255.0, 0.0, 1.0)
    base = unit.mean(axis=2, keepdims=True) if gray else unit
    levels = 2 ** np.ceil(np.log2(max(len(np.unique(np.round(unit * 255))), 2)))
    noise = rng.poisson(base * levels).astype(np.float32) / levels - base
    return image + noise * (255.0 * scale)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as a baseline JPEG at ``quality`` (Pillow/libjpeg, 4:2:0 like phones) and decode."""
    return to_float(np.asarray(Image.open(io.BytesIO(jpeg_bytes(to_uint8(image), quality))).convert("RGB")))


def jpeg_bytes(image_uint8: np.ndarray, quality: int) -> bytes:
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1–100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(image_uint8, mode="RGB").save(buffer, format="JPEG", quality=int(quality), subsampling="4:2:0")
    return buffer.getvalue()
