"""The release contract in code: how an exported model is opened, fed and read back.

Both sides use this one module, so that ``portraitsr evaluate`` scores exactly the pixels the
service serves on the same runtime: the float32 N×3×h×w ``lr`` → ``sr`` layout in [0, 1], edge
padding of the input to the model's multiple (and cropping of the output), rounding to uint8,
file checksums and the image file types the project reads. Sessions (ONNX Runtime or OpenVINO,
fp32 or bf16) come from :mod:`portraitsr.runtimes`. It needs NumPy (and a runtime when a model
is opened), never torch and nothing of ``service`` or ``training``.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from portraitsr.runtimes import REFERENCE, RuntimeRequest, open_session

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
# The network works on the upscaled image down to 1/8 of it (model/hpf.py, LATENT_STRIDE),
# so the upscaled side must be a multiple of this; inputs are edge-padded to fit, outputs cropped.
OUTPUT_MULTIPLE = 8
# Image files taken from folders (evaluation sets, training sources, `portraitsr upscale`): the
# formats the service's decoder accepts (service.core.images.ACCEPTED_FORMATS).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})


def sha256_of(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (ONNX files and weights are large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def default_input_multiple(scale: int) -> int:
    """The smallest input multiple whose upscale is a multiple of :data:`OUTPUT_MULTIPLE` (2 at ×4, 1 at ×8)."""
    return OUTPUT_MULTIPLE // math.gcd(OUTPUT_MULTIPLE, scale)


def pad_to_multiple(lr: np.ndarray, multiple: int) -> np.ndarray:
    """N×C×h×w edge-padded at the bottom and right to multiples of ``multiple`` (crop the output back)."""
    pad_h, pad_w = -lr.shape[2] % multiple, -lr.shape[3] % multiple
    if not (pad_h or pad_w):
        return lr
    return np.pad(lr, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """Images → the contract's ``lr``: N×3×h×w float32 in [0, 1].

    ``rgb``: N×h×w×3 or h×w×3 (one image), uint8 (divided by 255) or float in [0, 1].
    """
    rgb = np.asarray(rgb)
    batch = rgb[None] if rgb.ndim == 3 else rgb
    planes = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
    return planes / np.float32(255.0) if rgb.dtype == np.uint8 else planes


def round_to_uint8(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any layout) → uint8 levels, clipped and rounded half to even.

    The product with 255 is taken in float64, where it is exact for any float32 input, so the
    rounding never depends on float32 error (evaluation scores rounded images). Every float →
    uint8 pixel conversion of the project goes through here.
    """
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def to_uint8(sr: np.ndarray) -> np.ndarray:
    """The contract's ``sr`` (N×3×H×W, or 3×H×W) → N×H×W×3 (or H×W×3) uint8 (:func:`round_to_uint8`)."""
    pixels = round_to_uint8(sr)
    return pixels.transpose(1, 2, 0) if pixels.ndim == 3 else pixels.transpose(0, 2, 3, 1)


class ReleaseModel:
    """One exported SR model: ``run(lr)`` maps N×3×h×w to N×3×(s·h)×(s·w), float32 in [0, 1].

    Inputs are edge-padded to :attr:`input_multiple` before the run and the output is cropped back,
    so any input size gives the same pixels wherever the model runs (service, evaluate, upscale).
    ``runtime`` picks the runtime, device and precision (:mod:`portraitsr.runtimes`; default: the
    reference, ONNX Runtime fp32 on the CPU); what it runs on is in :attr:`session`
    (``runtime``, ``device``, ``precision``, ``provider``), and anything asked for that could not be
    had is in :attr:`fallback_reason`, never hidden.
    """

    def __init__(
        self,
        onnx_path: str | Path,
        scale: int,
        *,
        input_name: str = INPUT_NAME,
        output_name: str = OUTPUT_NAME,
        input_multiple: int | None = None,
        runtime: RuntimeRequest = REFERENCE,
    ) -> None:
        self.session = open_session(onnx_path, runtime)
        inputs, outputs = self.session.input_names, self.session.output_names
        if inputs != [input_name] or output_name not in outputs:
            raise ValueError(
                f"{onnx_path}: expected input {input_name!r} / output {output_name!r}, has {inputs} / {outputs}"
            )
        self.scale = scale
        self.input_name, self.output_name = input_name, output_name
        self.output_index = outputs.index(output_name)
        self.input_multiple = int(input_multiple or default_input_multiple(scale))
        self.runtime, self.precision = self.session.runtime, self.session.precision
        self.provider, self.fallback_reason = self.session.provider, self.session.fallback_reason

    def run(self, lr: np.ndarray) -> np.ndarray:
        padded = pad_to_multiple(np.ascontiguousarray(lr, dtype=np.float32), self.input_multiple)
        sr = self.session.run(padded)[self.output_index]
        return sr[:, :, : lr.shape[2] * self.scale, : lr.shape[3] * self.scale]

    def upscale_uint8(self, images: np.ndarray) -> np.ndarray:
        """N×h×w×3 uint8 → N×(s·h)×(s·w)×3 uint8: what the service returns for these pixels."""
        return to_uint8(self.run(to_model_input(images)))
