"""The query parameters the image routes share (``scale``, ``format``) and their check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from service.core.images import OUTPUT_FORMATS
from service.core.metrics import RequestOutcome
from service.http.errors import ApiError

SCALES = (4, 8)
# Each route sets its own default.
ScaleQuery = Annotated[int, Query(description="upscaling factor: 4 or 8", json_schema_extra={"enum": list(SCALES)})]
FormatQuery = Annotated[
    str, Query(description="output format: png, jpeg or webp", json_schema_extra={"enum": list(OUTPUT_FORMATS)})
]


def check_parameters(scale: int, output_format: str) -> None:
    if scale not in SCALES:
        raise ApiError(400, "bad_scale", f"scale must be one of {', '.join(map(str, SCALES))}, not {scale}",
                       RequestOutcome.BAD_INPUT)
    if output_format not in OUTPUT_FORMATS:
        raise ApiError(400, "bad_format", f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}",
                       RequestOutcome.BAD_INPUT)
