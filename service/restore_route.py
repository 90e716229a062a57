"""``POST /restore``: a whole photo upscaled, each face found in it restored by the model and pasted back.

The API finds the faces (MTCNN on ONNX Runtime, ``service/face_detector.py``), aligns each one
to the models' training framing and sends it as an ordinary job on the ``/upscale`` stream (the
same :class:`~service.api.JobBroker`), so faces of one photo and of concurrent requests share
batches, deadlines, 429s, reclaim and metrics. The background is upscaled here, on the thread
pool, while the workers run the faces.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.api import REQUEST_ID_PATTERN, SCALES, UPSCALE_OPENAPI, ApiError, JobBroker
from service.face_detector import DetectorSettings, FaceDetector
from service.images import (
    OUTPUT_FORMATS,
    DecodedImage,
    ImageInputError,
    ImageLimits,
    compose_output,
    decode_image,
    encode_image,
)
from service.metrics import ApiMetrics
from service.photo_restore import FacePlan, RestorePolicy, paste_faces, plan_faces, upscale_background
from service.settings import ServiceSettings

MAX_BOXES_HEADER_BYTES = 6000  # beyond this the X-Face-Boxes header is left out (use ?report=json)
RESTORE_HEADERS = {
    "X-Faces": {"schema": {"type": "integer"}, "description": "faces restored"},
    "X-Faces-Detected": {"schema": {"type": "integer"}, "description": "faces found"},
    "X-Face-Boxes": {"schema": {"type": "string"},
                     "description": 'JSON [{"box": [x1, y1, x2, y2], "score": s, "status": ...}] in input pixels'},
    "X-Batch-Sizes": {"schema": {"type": "string"}, "description": "the batch size of each restored face's job"},
    "Server-Timing": {"schema": {"type": "string"}, "description": "detect, queue, inference and total time (ms)"},
}
RESTORE_OPENAPI = {
    "requestBody": UPSCALE_OPENAPI["requestBody"],
    "responses": {"200": {"description": "the restored photo, or the faces found (`report=json`)", "headers": RESTORE_HEADERS}},
}


class LazyDetector:
    """The detector's ONNX sessions, made on first use (not at import or start-up), once."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.detector: FaceDetector | None = None
        self.lock = threading.Lock()

    def get(self) -> FaceDetector:
        with self.lock:
            if self.detector is None:
                self.detector = FaceDetector(settings=DetectorSettings(min_face_px=self.settings.detector_min_face_px))
            return self.detector


def restore_limits(settings: ServiceSettings, scale: int) -> ImageLimits:
    side = max(1, min(settings.restore_max_input_side, settings.restore_max_output_side // scale))
    return ImageLimits(settings.max_upload_bytes, min(settings.restore_max_input_pixels, side * side), side,
                       settings.min_input_side, too_large_hint=f" at ×{scale} (restore_max_input_side, restore_max_output_side)")


def add_restore_route(
    app: FastAPI,
    settings: ServiceSettings,
    broker: JobBroker,
    metrics: ApiMetrics,
    read_image_bytes: Callable[[Request], Awaitable[bytes]],
    error_response: Callable[[ApiError, str], JSONResponse],
) -> None:
    """Register ``POST /restore`` on ``app`` (directly: every route keeps its ``path``)."""
    detector = LazyDetector(settings)
    policy = RestorePolicy(min_inter_ocular=settings.restore_min_inter_ocular, max_faces=settings.restore_max_faces,
                           min_score=settings.restore_min_score)

    async def restore_faces(plans: list[FacePlan], scale: int, deadline: float):
        """One job per face, enqueued together so that an idle worker runs them as one batch."""
        faces = [DecodedImage(rgb=plan.crop, alpha=None, source_format="face", source_mode="RGB") for plan in plans]
        replies = await broker.submit_many(faces, scale, deadline)
        for reply in replies:
            if reply.status in ("bad_job", "no_model"):
                raise ApiError(400, reply.status, reply.meta.get("error", reply.status), "bad_input")
            if reply.status != "ok":
                if reply.status == "dead_lettered":
                    metrics.dead_letters.inc()
                raise ApiError(500, reply.status, reply.meta.get("error", "the job failed"), "error")
        return replies

    def detection_report(request_id: str, image: DecodedImage, scale: int, plans: list[FacePlan], detect_ms: float,
                         started: float) -> JSONResponse:
        height, width = image.rgb.shape[:2]
        total_ms = (time.perf_counter() - started) * 1000
        metrics.requests.labels("ok").inc()
        metrics.request_seconds.labels("ok").observe(total_ms / 1000)
        restorable = sum(plan.crop is not None for plan in plans)
        content = {"width": width, "height": height, "scale": scale, "faces_to_restore": restorable,
                   "faces": [plan.to_dict() for plan in plans], "detect_ms": round(detect_ms, 1)}
        headers = {"X-Request-ID": request_id, "X-Faces": str(restorable), "X-Faces-Detected": str(len(plans)),
                   "Server-Timing": f"detect;dur={detect_ms:.1f}, total;dur={total_ms:.1f}"}
        return JSONResponse(content, headers=headers)

    @app.post(
        "/restore",
        summary="Restore the faces of a whole photo",
        response_class=Response,
        openapi_extra=RESTORE_OPENAPI,
        responses={
            400: {"description": "bad `scale`, `format` or `report`; empty, corrupt or truncated image"},
            413: {"description": "body or photo over the /restore limits (checked from the header, before decoding)"},
            415: {"description": "not a PNG, JPEG, WebP, GIF or BMP image, or an animated image"},
            429: {"description": "the queue is full; `Retry-After` says when to try again"},
            503: {"description": "the queue (Redis) is unreachable"},
            504: {"description": "a face's job was not finished before its deadline"},
        },
    )
    async def restore(
        request: Request,
        scale: int = Query(4, description="upscaling factor: 4 or 8"),
        format: str = Query("png", description="output format: png, jpeg or webp"),
        report: str = Query("image", description="`image` (the default) or `json`: the faces found, no image"),
    ) -> Response:
        started = time.perf_counter()
        incoming_id = request.headers.get("x-request-id", "")
        request_id = incoming_id if REQUEST_ID_PATTERN.match(incoming_id) else uuid.uuid4().hex
        try:
            if scale not in SCALES:
                raise ApiError(400, "bad_scale", f"scale must be one of {', '.join(map(str, SCALES))}, not {scale}", "bad_input")
            if format not in OUTPUT_FORMATS:
                raise ApiError(400, "bad_format", f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {format!r}", "bad_input")
            if report not in ("image", "json"):
                raise ApiError(400, "bad_report", f"report must be image or json, not {report!r}", "bad_input")
            data = await read_image_bytes(request)
            try:
                image = await run_in_threadpool(decode_image, data, restore_limits(settings, scale))
            except ImageInputError as error:
                raise ApiError(error.status, error.code, error.reason, "bad_input") from error

            def detect_and_align() -> list[FacePlan]:
                return plan_faces(image.rgb, detector.get().detect(image.rgb), scale, policy)

            detect_started = time.perf_counter()
            plans = await run_in_threadpool(detect_and_align)
            detect_ms = (time.perf_counter() - detect_started) * 1000
            todo = [plan for plan in plans if plan.crop is not None]
            if report == "json":  # detection only: what would be restored, no model run
                return detection_report(request_id, image, scale, plans, detect_ms, started)
            deadline = time.time() + settings.job_deadline_s
            background_task = asyncio.ensure_future(run_in_threadpool(upscale_background, image.rgb, scale))
            try:
                replies = await restore_faces(todo, scale, deadline)
            finally:
                background = await background_task

            def paste_and_encode() -> bytes:
                restored = [(plan, reply.sr_array()) for plan, reply in zip(todo, replies, strict=True)]
                pasted = paste_faces(background, restored, scale, policy) if restored else background
                return encode_image(compose_output(pasted, image.alpha), format)

            body = await run_in_threadpool(paste_and_encode)
        except ApiError as error:
            metrics.requests.labels(error.outcome).inc()
            metrics.request_seconds.labels(error.outcome).observe(time.perf_counter() - started)
            return error_response(error, request_id)

        total_ms = (time.perf_counter() - started) * 1000
        metrics.requests.labels("ok").inc()
        metrics.request_seconds.labels("ok").observe(total_ms / 1000)
        for reply in replies:
            meta = reply.meta
            metrics.queue_wait_seconds.observe(meta["queue_wait_ms"] / 1000)
            metrics.inference_seconds.labels(meta["provider"]).observe(meta["inference_ms"] / 1000)
            metrics.batch_size.labels(meta["provider"]).observe(meta["batch_size"])
        queue_ms = max((r.meta["queue_wait_ms"] for r in replies), default=0.0)
        inference_ms = max((r.meta["inference_ms"] for r in replies), default=0.0)
        faces = [plan.to_dict() for plan in plans]
        headers = {
            "X-Request-ID": request_id,
            "Server-Timing": f"detect;dur={detect_ms:.1f}, queue;dur={queue_ms:.1f}, inference;dur={inference_ms:.1f}, "
                             f"total;dur={total_ms:.1f}",
            "X-Faces": str(len(todo)),
            "X-Faces-Detected": str(len(plans)),
            "X-Queue-Wait-Ms": f"{queue_ms:.1f}",
            "X-Inference-Ms": f"{inference_ms:.1f}",
            "X-Batch-Sizes": ",".join(str(r.meta["batch_size"]) for r in replies),
        }
        if replies:
            headers["X-Execution-Provider"] = replies[0].meta["provider"]
        boxes = json.dumps([{"box": f["box"], "score": f["score"], "status": f["status"]} for f in faces], separators=(",", ":"))
        if len(boxes) <= MAX_BOXES_HEADER_BYTES:
            headers["X-Face-Boxes"] = boxes
        return Response(body, media_type=OUTPUT_FORMATS[format], headers=headers)
