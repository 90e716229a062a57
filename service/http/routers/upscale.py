"""``POST /upscale``: decode, queue for the workers, encode the reply."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.core.images import OUTPUT_FORMATS, ImageLimits, compose_output, encode_image
from service.core.metrics import ApiMetrics
from service.core.settings import ServiceSettings
from service.http.dependencies import Broker, Metrics, Settings, require_api_key
from service.http.errors import ApiError, error_response, request_id_of
from service.http.openapi import UPSCALE_OPENAPI
from service.http.uploads import INLINE_CODEC_BYTES, decode_upload, read_image_bytes
from service.queue.protocol import Reply, ReplyStatus

SCALES = (4, 8)
# The query parameters /upscale and /restore share (each route sets its own default).
ScaleQuery = Annotated[int, Query(description="upscaling factor: 4 or 8", json_schema_extra={"enum": list(SCALES)})]
FormatQuery = Annotated[
    str, Query(description="output format: png, jpeg or webp", json_schema_extra={"enum": list(OUTPUT_FORMATS)})
]
router = APIRouter()


def limits_for(settings: ServiceSettings, scale: int) -> ImageLimits:
    """The byte and pixel limits, with the side limit tightened so the output stays within max_output_side."""
    side = max(1, min(settings.max_input_side, settings.max_output_side // scale))
    return ImageLimits(settings.max_upload_bytes, min(settings.max_input_pixels, side * side), side, settings.min_input_side)


def check_parameters(scale: int, output_format: str) -> None:
    if scale not in SCALES:
        raise ApiError(400, "bad_scale", f"scale must be one of {', '.join(map(str, SCALES))}, not {scale}", "bad_input")
    if output_format not in OUTPUT_FORMATS:
        raise ApiError(400, "bad_format", f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}", "bad_input")


def check_reply(reply: Reply, metrics: ApiMetrics) -> None:
    if reply.status in (ReplyStatus.BAD_JOB, ReplyStatus.NO_MODEL):
        raise ApiError(400, reply.status.value, reply.meta.error or reply.status.value, "bad_input")
    if reply.status != ReplyStatus.OK:
        if reply.status == ReplyStatus.DEAD_LETTERED:
            metrics.dead_letters.inc()
        raise ApiError(500, reply.status.value, reply.meta.error or "the job failed", "error")


def success_headers(reply: Reply, request_id: str, total_ms: float) -> dict[str, str]:
    meta = reply.meta
    return {
        "X-Request-ID": request_id,
        "Server-Timing": f"queue;dur={meta.queue_wait_ms:.1f}, inference;dur={meta.inference_ms:.1f}, total;dur={total_ms:.1f}",
        "X-Queue-Wait-Ms": f"{meta.queue_wait_ms:.1f}",
        "X-Inference-Ms": f"{meta.inference_ms:.1f}",
        "X-Batch-Size": str(meta.batch_size),
        "X-Execution-Provider": meta.provider,
    }


@router.post(
    "/upscale",
    summary="Upscale a face image",
    response_class=Response,
    openapi_extra=UPSCALE_OPENAPI,
    responses={200: {"description": "the upscaled image"}},
    dependencies=[Depends(require_api_key)],
)
async def upscale(
    request: Request,
    settings: Settings,
    broker: Broker,
    metrics: Metrics,
    scale: ScaleQuery = 8,
    format: FormatQuery = "png",
) -> Response:
    started = time.perf_counter()
    request_id = request_id_of(request)
    try:
        check_parameters(scale, format)
        image = await decode_upload(await read_image_bytes(request, settings.max_upload_bytes), limits_for(settings, scale))
        reply = await broker.submit(image, scale, time.time() + settings.job_deadline_s)
        check_reply(reply, metrics)

        def encode() -> bytes:
            return encode_image(compose_output(reply.sr_array(), image.alpha), format)

        small = len(reply.pixels) <= 4 * INLINE_CODEC_BYTES and format == "png"
        body = encode() if small else await run_in_threadpool(encode)
    except ApiError as error:
        metrics.observe_request(error.outcome, time.perf_counter() - started)
        return error_response(error, request_id)
    seconds = time.perf_counter() - started
    metrics.observe_request("ok", seconds, [reply])
    return Response(body, media_type=OUTPUT_FORMATS[format], headers=success_headers(reply, request_id, seconds * 1000))
