"""The query parameters the image routes share (``scale``, ``format``, ``model``) and their check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from starlette.concurrency import run_in_threadpool

from portraitsr.manifest import ModelVariant
from service.core.images import OUTPUT_FORMATS, DecodedImage
from service.core.input_quality import AUTO, MODEL_CHOICES, pick_variant
from service.core.metrics import RequestOutcome
from service.http.errors import ApiError

SCALES = (4, 8)
DEFAULT_MODEL = AUTO
INLINE_AUTO_PIXELS = 256 * 256  # up to this, model=auto reads the upload on the event loop
# Each route sets its own default.
ScaleQuery = Annotated[int, Query(description="upscaling factor: 4 or 8", json_schema_extra={"enum": list(SCALES)})]
FormatQuery = Annotated[
    str, Query(description="output format: png, jpeg or webp", json_schema_extra={"enum": list(OUTPUT_FORMATS)})
]
ModelQuery = Annotated[
    str,
    Query(description="which model runs: `auto` (decided from the upload: its JPEG quality and noise), `clean` "
                      "(trained on faces shrunk by bicubic alone) or `real` (trained on degraded faces)",
          json_schema_extra={"enum": list(MODEL_CHOICES)}),
]


def check_parameters(scale: int, output_format: str, model: str = DEFAULT_MODEL) -> None:
    if scale not in SCALES:
        raise ApiError(400, "bad_scale", f"scale must be one of {', '.join(map(str, SCALES))}, not {scale}",
                       RequestOutcome.BAD_INPUT)
    if output_format not in OUTPUT_FORMATS:
        raise ApiError(400, "bad_format", f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}",
                       RequestOutcome.BAD_INPUT)
    if model not in MODEL_CHOICES:
        raise ApiError(400, "bad_model", f"model must be one of {', '.join(MODEL_CHOICES)}, not {model!r}",
                       RequestOutcome.BAD_INPUT)


async def variant_for(model: str, scale: int, available: set[ModelVariant], file_bytes: bytes,
                      image: DecodedImage) -> ModelVariant:
    """The model variant that runs an upload (``model`` checked by :func:`check_parameters`);
    ``available``: what the live workers hold at ``scale``. ``auto`` reads the whole upload, on the
    thread pool when it is larger than a face."""
    if model != AUTO or image.rgb.shape[0] * image.rgb.shape[1] <= INLINE_AUTO_PIXELS:
        return pick_variant(model, scale, available, file_bytes, image.rgb)
    return await run_in_threadpool(pick_variant, model, scale, available, file_bytes, image.rgb)
