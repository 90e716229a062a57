"""The fixed degradation table the models are measured on (benchmarks/degradations.py).

Each row is a deterministic recipe HR → LR; the only randomness (noise) comes from a generator
seeded by the row and the image's position, so every run of the table sees the same inputs.
A row also gives the file a user would upload (``upload``): the JPEG bytes themselves where the
recipe ends in JPEG, else a PNG — what the service's ``model=auto`` decides from.
The same rows, one per held-out face in rotation, are the real models' validation set
(``degraded_held_out``): checkpoints are chosen on them, never on Helen-50.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from training.data.degrade import bicubic_downsample
from training.degradations import operations as ops
from training.degradations.kernels import blur_kernel, kernel_size_for

# A recipe returns the LR image (float or uint8), or the bytes of the JPEG it ended with.
Recipe = Callable[[np.ndarray, int, np.random.Generator], "np.ndarray | bytes"]


@dataclass(frozen=True)
class Degradation:
    name: str
    description: str
    recipe: Recipe

    def apply(self, hr: np.ndarray, scale: int, image_index: int = 0) -> np.ndarray:
        """HR H×W×3 uint8 → LR uint8, the same bytes on every run for the same (row, image)."""
        return decode(self.upload(hr, scale, image_index))

    def upload(self, hr: np.ndarray, scale: int, image_index: int = 0) -> bytes:
        """The LR as the file a user sends: the recipe's own JPEG, or a PNG of its pixels."""
        seed = zlib.crc32(self.name.encode()) * 1_000_003 + image_index
        result = self.recipe(hr, scale, np.random.default_rng(seed))
        if isinstance(result, bytes):
            return result
        buffer = io.BytesIO()
        Image.fromarray(ops.to_uint8(result), mode="RGB").save(buffer, format="PNG")
        return buffer.getvalue()


def decode(file_bytes: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(file_bytes)) as image:
        return np.asarray(image.convert("RGB"))


def _lr_size(hr: np.ndarray, scale: int) -> tuple[int, int]:
    return hr.shape[1] // scale, hr.shape[0] // scale


def _bicubic(hr: np.ndarray, scale: int) -> np.ndarray:
    return ops.to_float(bicubic_downsample(hr, scale))


def _then_jpeg(quality: int) -> Recipe:
    return lambda hr, scale, rng: ops.jpeg_bytes(bicubic_downsample(hr, scale), quality)


def _then_noise(sigma: float) -> Recipe:
    return lambda hr, scale, rng: ops.gaussian_noise(_bicubic(hr, scale), sigma, gray=False, rng=rng)


def _gaussian_blur(hr: np.ndarray, sigma: float) -> np.ndarray:
    return ops.blur(hr, blur_kernel("gaussian", kernel_size_for(sigma, 63), sigma))


def _blur_then_shrink(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    return bicubic_downsample(ops.to_uint8(_gaussian_blur(hr, 0.5 * scale)), scale)


def _area_shrink(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    return ops.resize(hr, _lr_size(hr, scale), "area")


def _phone_chain(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A phone photo: slight lens blur, area shrink, sensor noise, then JPEG 70."""
    small = ops.to_uint8(ops.resize(_gaussian_blur(hr, 0.25 * scale), _lr_size(hr, scale), "area"))
    return ops.jpeg_bytes(ops.to_uint8(ops.gaussian_noise(small, 4.0, gray=False, rng=rng)), 70)


def _web_chain(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A re-shared web image: shrunk to twice the size and saved at 80, then shrunk again and saved at 60."""
    width, height = _lr_size(hr, scale)
    first = ops.jpeg(ops.resize(hr, (2 * width, 2 * height), "bilinear"), 80)
    return ops.jpeg_bytes(ops.to_uint8(ops.resize(first, (width, height), "area")), 60)


TABLE: tuple[Degradation, ...] = (
    Degradation("clean", "Pillow bicubic (the paper's protocol)", lambda hr, scale, rng: _bicubic(hr, scale)),
    Degradation("jpeg90", "bicubic, then JPEG quality 90", _then_jpeg(90)),
    Degradation("jpeg75", "bicubic, then JPEG quality 75", _then_jpeg(75)),
    Degradation("jpeg50", "bicubic, then JPEG quality 50", _then_jpeg(50)),
    Degradation("jpeg30", "bicubic, then JPEG quality 30", _then_jpeg(30)),
    Degradation("noise5", "bicubic, then Gaussian noise σ 5 (0–255, per channel)", _then_noise(5.0)),
    Degradation("noise10", "bicubic, then Gaussian noise σ 10", _then_noise(10.0)),
    Degradation("noise15", "bicubic, then Gaussian noise σ 15", _then_noise(15.0)),
    Degradation("blur", "Gaussian blur σ 0.5×scale (HR pixels), then bicubic", _blur_then_shrink),
    Degradation("area", "area (box) shrinking instead of bicubic", _area_shrink),
    Degradation("phone", "blur σ 0.25×scale, area shrink, noise σ 4, JPEG 70", _phone_chain),
    Degradation("web", "bilinear to 2× LR, JPEG 80, area to LR, JPEG 60", _web_chain),
)
BY_NAME = {row.name: row for row in TABLE}


def degraded_held_out(hr_images: np.ndarray, scale: int) -> tuple[np.ndarray, list[str]]:
    """Each face through one row of the table, in rotation: (N×h×w×3 uint8 LR, row names)."""
    rows = [TABLE[index % len(TABLE)] for index in range(len(hr_images))]
    lr = np.stack([row.apply(hr, scale, index) for index, (row, hr) in enumerate(zip(rows, hr_images, strict=True))])
    return lr, [row.name for row in rows]
