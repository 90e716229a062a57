"""``POST /restore``: a whole photo upscaled, each face found in it restored by the model and pasted back.

The API finds the faces (MTCNN on ONNX Runtime, :mod:`service.faces.detector`), aligns each one
to the models' training framing and sends them as ordinary jobs on the ``/upscale`` stream, all of
a photo's faces in one admission (:meth:`service.queue.broker.JobBroker.submit_many`), so faces of one
photo and of concurrent requests share batches, deadlines, 429s, re-submission and metrics. The
background is upscaled here, on the thread pool, while the workers run the faces.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.core.images import OUTPUT_FORMATS, DecodedImage, ImageLimits, compose_output, encode_image
from service.core.metrics import RequestOutcome
from service.core.settings import ServiceSettings
from service.faces.restoration import FacePlan, RestorePolicy, paste_faces, plan_faces, upscale_background
from service.http.dependencies import Broker, Detector, Metrics, Settings, require_api_key
from service.http.errors import REFUSALS, ApiError
from service.http.openapi import RESTORE_OPENAPI
from service.http.outcomes import RequestRecord
from service.http.parameters import (
    DEFAULT_MODEL,
    FormatQuery,
    ModelQuery,
    ScaleQuery,
    check_parameters,
    variant_for,
)
from service.http.uploads import decode_upload, read_image_bytes
from service.queue.protocol import Reply

MAX_BOXES_HEADER_BYTES = 6000  # beyond this the X-Face-Boxes header is left out (use ?report=json)
REPORTS = ("image", "json")
router = APIRouter()


def restore_limits(settings: ServiceSettings, scale: int) -> ImageLimits:
    side = max(1, min(settings.restore_max_input_side, settings.restore_max_output_side // scale))
    return ImageLimits(settings.max_upload_bytes, min(settings.restore_max_input_pixels, side * side), side,
                       settings.min_input_side, too_large_hint=f" at ×{scale} (restore_max_input_side, restore_max_output_side)")


def restore_policy(settings: ServiceSettings) -> RestorePolicy:
    return RestorePolicy(min_inter_ocular=settings.restore_min_inter_ocular, max_faces=settings.restore_max_faces,
                         min_score=settings.restore_min_score)


def detection_report(request_id: str, image: DecodedImage, scale: int, plans: list[FacePlan], detect_ms: float,
                     total_ms: float) -> JSONResponse:
    height, width = image.rgb.shape[:2]
    restorable = sum(plan.crop is not None for plan in plans)
    content = {"width": width, "height": height, "scale": scale, "faces_to_restore": restorable,
               "faces": [plan.to_dict() for plan in plans], "detect_ms": round(detect_ms, 1)}
    headers = {"X-Request-ID": request_id, "X-Faces": str(restorable), "X-Faces-Detected": str(len(plans)),
               "Server-Timing": f"detect;dur={detect_ms:.1f}, total;dur={total_ms:.1f}"}
    return JSONResponse(content, headers=headers)


def restore_headers(request_id: str, plans: list[FacePlan], replies: list[Reply], detect_ms: float,
                    total_ms: float) -> dict[str, str]:
    queue_ms = max((reply.meta.queue_wait_ms for reply in replies), default=0.0)
    inference_ms = max((reply.meta.inference_ms for reply in replies), default=0.0)
    headers = {
        "X-Request-ID": request_id,
        "Server-Timing": f"detect;dur={detect_ms:.1f}, queue;dur={queue_ms:.1f}, inference;dur={inference_ms:.1f}, "
                         f"total;dur={total_ms:.1f}",
        "X-Faces": str(len(replies)),
        "X-Faces-Detected": str(len(plans)),
        "X-Queue-Wait-Ms": f"{queue_ms:.1f}",
        "X-Inference-Ms": f"{inference_ms:.1f}",
        "X-Batch-Sizes": ",".join(str(reply.meta.batch_size) for reply in replies),
    }
    if replies:  # one model for all of a photo's faces
        headers["X-Execution-Provider"] = replies[0].meta.provider
        headers["X-Model"] = replies[0].meta.model
    faces = [plan.to_dict() for plan in plans]
    boxes = json.dumps([{"box": f["box"], "score": f["score"], "status": f["status"]} for f in faces], separators=(",", ":"))
    if len(boxes) <= MAX_BOXES_HEADER_BYTES:
        headers["X-Face-Boxes"] = boxes
    return headers


@router.post(
    "/restore",
    summary="Restore the faces of a whole photo",
    response_class=Response,
    openapi_extra=RESTORE_OPENAPI,
    dependencies=[Depends(require_api_key)],
)
async def restore(
    request: Request,
    settings: Settings,
    broker: Broker,
    metrics: Metrics,
    detector: Detector,
    scale: ScaleQuery = 4,
    format: FormatQuery = "png",
    report: str = Query("image", description="`image` (the default) or `json`: the faces found, no image",
                        json_schema_extra={"enum": list(REPORTS)}),
    model: ModelQuery = DEFAULT_MODEL,
) -> Response:
    record = RequestRecord(request, metrics)
    try:
        check_parameters(scale, format, model)
        if report not in REPORTS:
            raise ApiError(400, "bad_report", f"report must be one of {', '.join(REPORTS)}, not {report!r}",
                           RequestOutcome.BAD_INPUT)
        data = await read_image_bytes(request, settings.max_upload_bytes)
        image = await decode_upload(data, restore_limits(settings, scale))
        # One model for all of the photo's faces, decided from the photo's file (JPEG quality) and pixels.
        variant = await variant_for(model, scale, broker.variants(scale), data, image)
        policy = restore_policy(settings)

        def detect_and_align() -> list[FacePlan]:
            return plan_faces(image.rgb, detector.get().detect(image.rgb), scale, policy)

        detect_started = time.perf_counter()
        plans = await run_in_threadpool(detect_and_align)
        detect_ms = (time.perf_counter() - detect_started) * 1000
        if report == "json":  # detection only: what would be restored, no model run
            seconds = record.succeeded()
            return detection_report(record.request_id, image, scale, plans, detect_ms, seconds * 1000)
        todo = [plan for plan in plans if plan.crop is not None]
        faces = [DecodedImage(rgb=plan.crop, alpha=None, source_format="face", source_mode="RGB") for plan in todo]
        background_task = asyncio.ensure_future(run_in_threadpool(upscale_background, image.rgb, scale))
        try:
            # All faces in one admission, all or none: an idle worker runs them as one batch.
            replies = await broker.submit_many(faces, scale, time.time() + settings.job_deadline_s, variant)
            for reply in replies:
                record.check_reply(reply)
        finally:
            background = await background_task

        def paste_and_encode() -> bytes:
            restored = [(plan, reply.sr_array()) for plan, reply in zip(todo, replies, strict=True)]
            pasted = paste_faces(background, restored, scale, policy) if restored else background
            return encode_image(compose_output(pasted, image.alpha), format)

        body = await run_in_threadpool(paste_and_encode)
    except REFUSALS as error:
        return record.refused(error)
    seconds = record.succeeded(replies)
    headers = restore_headers(record.request_id, plans, replies, detect_ms, seconds * 1000)
    return Response(body, media_type=OUTPUT_FORMATS[format], headers=headers)
