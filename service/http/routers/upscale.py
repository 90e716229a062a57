"""``POST /upscale``: decode, queue for the workers, encode the reply."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from service.core.images import OUTPUT_FORMATS, ImageLimits, compose_output, encode_image
from service.core.settings import ServiceSettings
from service.http.dependencies import Broker, Metrics, Settings, require_api_key
from service.http.errors import REFUSALS
from service.http.openapi import UPSCALE_OPENAPI
from service.http.outcomes import RequestRecord
from service.http.parameters import (
    DEFAULT_MODEL,
    FormatQuery,
    ModelQuery,
    ScaleQuery,
    check_parameters,
    variant_for,
)
from service.http.uploads import INLINE_CODEC_BYTES, decode_upload, read_image_bytes
from service.queue.protocol import Reply

router = APIRouter()


def limits_for(settings: ServiceSettings, scale: int) -> ImageLimits:
    """The byte and pixel limits, with the side limit tightened so the output stays within max_output_side."""
    side = max(1, min(settings.max_input_side, settings.max_output_side // scale))
    return ImageLimits(settings.max_upload_bytes, min(settings.max_input_pixels, side * side), side, settings.min_input_side)


def success_headers(reply: Reply, request_id: str, total_ms: float) -> dict[str, str]:
    meta = reply.meta
    return {
        "X-Request-ID": request_id,
        "Server-Timing": f"queue;dur={meta.queue_wait_ms:.1f}, inference;dur={meta.inference_ms:.1f}, total;dur={total_ms:.1f}",
        "X-Queue-Wait-Ms": f"{meta.queue_wait_ms:.1f}",
        "X-Inference-Ms": f"{meta.inference_ms:.1f}",
        "X-Batch-Size": str(meta.batch_size),
        "X-Execution-Provider": meta.provider,
        "X-Model": meta.model,
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
    model: ModelQuery = DEFAULT_MODEL,
) -> Response:
    record = RequestRecord(request, metrics)
    try:
        check_parameters(scale, format, model)
        data = await read_image_bytes(request, settings.max_upload_bytes)
        image = await decode_upload(data, limits_for(settings, scale))
        variant = await variant_for(model, scale, broker.variants(scale), data, image)
        reply = await broker.submit(image, scale, time.time() + settings.job_deadline_s, variant)
        record.check_reply(reply)

        def encode() -> bytes:
            return encode_image(compose_output(reply.sr_array(), image.alpha), format)

        small = len(reply.pixels) <= 4 * INLINE_CODEC_BYTES and format == "png"
        body = encode() if small else await run_in_threadpool(encode)
    except REFUSALS as error:
        return record.refused(error)
    seconds = record.succeeded([reply])
    headers = success_headers(reply, record.request_id, seconds * 1000)
    return Response(body, media_type=OUTPUT_FORMATS[format], headers=headers)
