"""What an upload looks like before it is upscaled: its JPEG quality and its noise level, and
from them which model variant suits it (``model=auto``); :func:`pick_variant` resolves what a
caller asked for (``auto``, ``clean`` or ``real``) against the models there are.

- JPEG quality: the file's luminance quantisation table against libjpeg's standard table scaled
  to each quality 1–100 (ITU-T T.81 Annex K; what Pillow, libjpeg-turbo, browsers and most
  phones write); the nearest one. Files of other formats have none.
- Noise: Immerkær's estimator (1996) on the luma, made robust: I ∗ M, with M the difference of
  two Laplacians, cancels smooth structure and leaves noise of σ·√36 = 6σ; a face of 16–32 px is
  mostly edges, so σ is read from the median absolute response (median |N(0, 1)| = 0.6745)
  rather than Immerkær's mean, which the edges inflate.

NumPy and Pillow only: the API and the workers both use it, and neither imports torch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from portraitsr.manifest import ModelVariant

# ITU-T T.81 Annex K.1: the luminance table at quality 50, row-major (as Pillow reports it).
STANDARD_LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.int64)  # fmt: skip
_IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def scaled_table(quality: int) -> np.ndarray:
    """libjpeg's table for ``quality`` (jpeg_quality_scaling, baseline-clamped to 1–255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((STANDARD_LUMA_TABLE * scale + 50) // 100, 1, 255)


_TABLES = np.stack([scaled_table(quality) for quality in range(1, 101)])


def jpeg_quality(file_bytes: bytes) -> int | None:
    """The quality a JPEG file was saved at (1–100, nearest standard table); None if not a JPEG."""
    try:
        with Image.open(io.BytesIO(file_bytes)) as image:
            if image.format != "JPEG":
                return None
            tables = getattr(image, "quantization", None) or {}
    except Exception:
        return None
    if 0 not in tables or len(tables[0]) != 64:
        return None
    distance = np.abs(_TABLES - np.asarray(tables[0], dtype=np.int64)).sum(axis=1)
    return int(np.argmin(distance)) + 1


def noise_sigma(rgb_uint8: np.ndarray) -> float:
    """Estimated σ of additive Gaussian noise (0–255 units) in the image's luma."""
    luma = rgb_uint8[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    height, width = luma.shape
    if height < 3 or width < 3:
        return 0.0
    response = sum(
        _IMMERKAER_MASK[dy, dx] * luma[dy : height - 2 + dy, dx : width - 2 + dx] for dy in range(3) for dx in range(3)
    )
    return float(np.median(np.abs(response)) / (0.6745 * 6.0))


@dataclass(frozen=True)
class AutoRule:
    """``model=auto``: the real model for a JPEG at or below ``jpeg_quality_max`` or for input
    whose noise estimate reaches the scale's threshold (a 16 px face reads noisier than a 32 px
    one: more of it is edges); the clean model otherwise. The defaults were chosen on
    table-degraded held-out faces, never on Helen-50 (docs/degradations.md)."""

    jpeg_quality_max: int = 90
    noise_sigma_min_x4: float = 5.0
    noise_sigma_min_x8: float = 9.5

    def choose(self, file_bytes: bytes, rgb_uint8: np.ndarray, scale: int) -> ModelVariant:
        quality = jpeg_quality(file_bytes)
        if quality is not None and quality <= self.jpeg_quality_max:
            return ModelVariant.REAL
        threshold = self.noise_sigma_min_x8 if scale >= 8 else self.noise_sigma_min_x4
        if noise_sigma(rgb_uint8) >= threshold:
            return ModelVariant.REAL
        return ModelVariant.CLEAN


AUTO = "auto"
MODEL_CHOICES = (AUTO, *(str(variant) for variant in ModelVariant))  # what `model=` / `--model` accept


class ModelUnavailable(ValueError):
    """The caller asked for a variant the release (or the live workers) does not have at that scale."""


def pick_variant(
    choice: str, scale: int, available: set[ModelVariant], file_bytes: bytes, rgb: np.ndarray,
    rule: AutoRule | None = None,
) -> ModelVariant:
    """The variant that runs an upload: ``choice`` (one of :data:`MODEL_CHOICES`) resolved against
    the variants ``available`` at ``scale`` (empty: not known).

    ``clean`` and ``real`` are what they say, or :class:`ModelUnavailable` when ``available`` is
    known and lacks it; ``auto`` asks ``rule`` (from the file's bytes and its pixels, float in
    [0, 1] or uint8) and runs the clean model (every release has one) unless the real one is known
    to be there.
    """
    if choice != AUTO:
        variant = ModelVariant(choice)
        if available and variant not in available:
            has = ", ".join(sorted(str(v) for v in available))
            raise ModelUnavailable(f"no {variant} model at ×{scale} (the models at ×{scale}: {has})")
        return variant
    pixels = rgb if rgb.dtype == np.uint8 else np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    chosen = (rule or AutoRule()).choose(file_bytes, pixels, scale)
    return chosen if chosen in available else ModelVariant.CLEAN
