"""Safe image decoding and encoding, shared by the API, the workers and ``portraitsr upscale``.

Decoding checks the byte size, then the pixel size declared in the header *before* any pixel is
decoded (decompression bombs), applies the EXIF orientation, and turns every supported mode
(grayscale, palette, alpha, 16-bit, CMYK) into float32 RGB in [0, 1] plus an optional alpha
plane. Alpha is not seen by the model: it is upscaled bicubically and re-attached.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# The model's input and output layouts are the release contract's (shared with `evaluate`),
# re-exported here beside the decoder and encoder that feed and read them.
from portraitsr.release import (
    round_to_uint8,
    to_model_input,  # noqa: F401
)
from portraitsr.release import to_uint8 as sr_to_uint8  # noqa: F401

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Magic bytes of the accepted formats (WebP: RIFF....WEBP): a file that starts like one of them
# but cannot be opened is a damaged image (400), not an unsupported one (415).
ACCEPTED_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
OUTPUT_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95


class ImageProblem(StrEnum):
    """Why an image is refused; the value is the API's stable error code (the HTTP layer adds the status)."""

    EMPTY = "empty_body"
    TOO_LARGE = "too_large"  # bytes
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_SMALL = "too_small"
    CORRUPT = "corrupt_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    ANIMATED = "animated_image"
    BAD_OUTPUT_FORMAT = "bad_format"


class ImageInputError(ValueError):
    """An input the service refuses: the :class:`ImageProblem` and the reason, for people."""

    def __init__(self, problem: ImageProblem, reason: str):
        super().__init__(reason)
        self.problem = problem
        self.reason = reason

    @property
    def code(self) -> str:
        return self.problem.value


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 4 * 1024 * 1024
    max_pixels: int = 512 * 512
    max_side: int = 512
    min_side: int = 1
    too_large_hint: str = ": /upscale takes face crops; send whole photos to /restore"


@dataclass
class DecodedImage:
    rgb: np.ndarray  # float32 H×W×3 in [0, 1]
    alpha: np.ndarray | None  # float32 H×W in [0, 1], or None when the input is opaque
    source_format: str
    source_mode: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.rgb.shape[1], self.rgb.shape[0]


def _open_checked(data: bytes, limits: ImageLimits) -> Image.Image:
    if not data:
        raise ImageInputError(ImageProblem.EMPTY, "the request has no image (empty body)")
    if len(data) > limits.max_bytes:
        raise ImageInputError(ImageProblem.TOO_LARGE, f"the image has {len(data)} bytes; the limit is {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageInputError(ImageProblem.TOO_MANY_PIXELS, f"the image header declares too many pixels ({error})") from error
    except UnidentifiedImageError as error:
        if data.startswith(ACCEPTED_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise ImageInputError(ImageProblem.CORRUPT, "the image header is damaged or incomplete") from error
        raise ImageInputError(
            ImageProblem.UNSUPPORTED_FORMAT, f"not a recognised image; send one of {', '.join(ACCEPTED_FORMATS)}"
        ) from error
    except Exception as error:  # Pillow raises many kinds of errors on garbage headers
        raise ImageInputError(ImageProblem.CORRUPT, f"the image header cannot be read: {error}") from error
    if image.format not in ACCEPTED_FORMATS:
        raise ImageInputError(
            ImageProblem.UNSUPPORTED_FORMAT, f"{image.format} images are not accepted; send one of {', '.join(ACCEPTED_FORMATS)}"
        )
    if getattr(image, "n_frames", 1) > 1:
        raise ImageInputError(ImageProblem.ANIMATED, "animated images are not accepted; send a single frame")
    width, height = image.size
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise ImageInputError(
            ImageProblem.TOO_MANY_PIXELS,
            f"the image is {width}×{height}; the limit here is {limits.max_side} pixels per side "
            f"({limits.max_pixels} pixels){limits.too_large_hint}",
        )
    if min(width, height) < limits.min_side:
        raise ImageInputError(ImageProblem.TOO_SMALL, f"the image is {width}×{height}; the minimum side is {limits.min_side}")
    return image


def _to_float_planes(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 RGB H×W×3 and alpha H×W (or None) in [0, 1] from any Pillow mode."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit integer) grayscale: keep its precision instead of clipping to 8 bits.
        gray = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode != "I" or gray.max(initial=0) > 255 else 255.0
        gray = np.clip(gray / peak, 0.0, 1.0).astype(np.float32)
        return np.repeat(gray[:, :, None], 3, axis=2), None
    if mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[:, :, None], 3, axis=2), None
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if mode in ("L", "1") or (mode == "P" and not has_alpha):
        converted = image.convert("RGB")
    elif has_alpha:
        converted = image.convert("RGBA")
    else:
        converted = image.convert("RGB")  # RGB, CMYK, YCbCr, ...
    array = np.asarray(converted, dtype=np.float32) / 255.0
    if converted.mode == "RGBA":
        alpha = np.ascontiguousarray(array[:, :, 3])
        # An alpha plane that is fully opaque carries nothing: drop it.
        return np.ascontiguousarray(array[:, :, :3]), (None if alpha.min() >= 1.0 else alpha)
    return np.ascontiguousarray(array), None


def decode_image(data: bytes, limits: ImageLimits | None = None) -> DecodedImage:
    """Decode untrusted bytes into float32 RGB (and alpha), or raise :class:`ImageInputError`."""
    limits = limits or ImageLimits()
    image = _open_checked(data, limits)
    source_format, source_mode = image.format, image.mode
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except Exception as error:
        raise ImageInputError(ImageProblem.CORRUPT, f"the image data cannot be decoded (truncated or corrupt): {error}") from error
    rgb, alpha = _to_float_planes(image)
    return DecodedImage(rgb=rgb, alpha=alpha, source_format=source_format, source_mode=source_mode)


def compose_output(rgb_uint8: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """The upscaled RGB with the input's alpha upscaled bicubically to match, when there was one."""
    image = Image.fromarray(rgb_uint8, mode="RGB")
    if alpha is None:
        return image
    alpha_image = Image.fromarray(round_to_uint8(alpha), mode="L")
    image.putalpha(alpha_image.resize(image.size, Image.Resampling.BICUBIC))
    return image


def encode_image(image: Image.Image, output_format: str) -> bytes:
    """PNG, JPEG or WebP bytes. JPEG has no alpha: a transparent image is flattened onto white."""
    if output_format not in OUTPUT_FORMATS:
        raise ImageInputError(ImageProblem.BAD_OUTPUT_FORMAT, f"format must be one of {', '.join(OUTPUT_FORMATS)}")
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, format="PNG", compress_level=1)
    elif output_format == "jpeg":
        if image.mode == "RGBA":
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.getchannel("A"))
            image = background
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY)
    return buffer.getvalue()
