"""The HTTP API: ``POST /upscale`` in front of the Redis job stream, health, metrics, the web page.

Each API instance has its own reply stream; one background task reads it and resolves the
asyncio future of the request waiting for that job, so no request polls. Results are raw bytes
plus JSON metadata (no pickle) and the reply stream expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
import uuid
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

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
from service.protocol import (
    Job,
    Reply,
    completed_counter_key,
    heartbeat_pattern,
    redis_client,
    reply_stream_key,
)
from service.settings import ServiceSettings

log = logging.getLogger("portraitsr.api")
STATIC_DIR = Path(__file__).resolve().parent / "static"
SCALES = (4, 8)
# Bounded queue in one atomic round trip: add the job only while the stream is below the limit.
ENQUEUE_IF_ROOM = """
local depth = redis.call('XLEN', KEYS[1])
if depth >= tonumber(ARGV[1]) then return {0, depth} end
return {redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2)), depth}
"""
# Several jobs at once (the faces of one photo), all or none: ARGV = limit, fields per job, then the
# jobs' fields back to back. One script, so a blocked worker wakes to all of them: one batch.
ENQUEUE_MANY_IF_ROOM = """
local depth = redis.call('XLEN', KEYS[1])
local per_job = tonumber(ARGV[2])
local count = (#ARGV - 2) / per_job
if depth + count > tonumber(ARGV[1]) then return {0, depth} end
local ids = {}
for job = 0, count - 1 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3 + job * per_job, 2 + (job + 1) * per_job))
end
return {ids, depth}
"""
# Small images are decoded and encoded on the event loop: cheaper than a hop to the thread pool.
INLINE_CODEC_BYTES = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # room for a form's boundaries and headers around the image
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "stable error code"},
        "detail": {"type": "string", "description": "the reason, for people"},
        "request_id": {"type": "string"},
    },
}
ERROR_RESPONSES = {
    400: "empty body, corrupt or truncated image, bad `scale` or `format`, image smaller than the minimum",
    413: "body over `max_upload_bytes`, or image over `max_input_side` / `max_input_pixels` (read from the header)",
    415: "not a PNG, JPEG, WebP, GIF or BMP image, or an animated image",
    429: "the queue is full; `Retry-After` says when to try again",
    500: "the job failed on the workers (dead-lettered after repeated failures)",
    503: "the queue (Redis) is unreachable",
    504: "the job's deadline passed before a worker finished it",
}
UPSCALE_OPENAPI = {
    "requestBody": {
        "required": True,
        "description": "the image: a multipart form field `image`, or the raw body (any image content type)",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}, "required": ["image"]}
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {
            "description": "the upscaled image, `scale`× the input's width and height",
            "content": {mime: {"schema": {"type": "string", "format": "binary"}} for mime in OUTPUT_FORMATS.values()},
            "headers": {
                "X-Request-ID": {"schema": {"type": "string"}, "description": "the request's id (yours if you sent one)"},
                "Server-Timing": {"schema": {"type": "string"}, "description": "queue, inference and total time (ms)"},
                "X-Queue-Wait-Ms": {"schema": {"type": "number"}, "description": "time the job waited for a worker"},
                "X-Inference-Ms": {"schema": {"type": "number"}, "description": "model time of the job's batch"},
                "X-Batch-Size": {"schema": {"type": "integer"}, "description": "images in the job's batch"},
                "X-Execution-Provider": {"schema": {"type": "string"}, "description": "ONNX Runtime provider used"},
            },
        },
        **{
            str(status): {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for status, text in ERROR_RESPONSES.items()
        },
    },
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, outcome: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.outcome, self.headers = status, code, detail, outcome, headers or {}


class JobBroker:
    """Enqueues jobs and hands each reply to the request waiting for it (one reader task per instance)."""

    def __init__(self, settings: ServiceSettings, metrics: ApiMetrics):
        self.settings = settings
        self.metrics = metrics
        self.instance_id = uuid.uuid4().hex[:12]
        self.reply_stream = reply_stream_key(settings, self.instance_id)
        self.redis = redis_client(settings, 5)
        self.waiting: dict[str, asyncio.Future] = {}
        self.enqueue_script = self.redis.register_script(ENQUEUE_IF_ROOM)
        self.enqueue_many_script = self.redis.register_script(ENQUEUE_MANY_IF_ROOM)
        self.queue_depth = 0
        self.throughput = 0.0  # images/s over all workers, measured
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self._read_replies()), asyncio.create_task(self._sample_stats())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.redis.delete(self.reply_stream)
        await self.redis.aclose()

    async def _read_replies(self) -> None:
        last_id = b"0-0"  # the stream is this instance's own: read all of it, even across reconnects
        while True:
            try:
                response = await self.redis.xread({self.reply_stream: last_id}, count=256, block=1000)
                entries = [entry for _, stream_entries in response or [] for entry in stream_entries]
                for entry_id, fields in entries:
                    last_id = entry_id
                    reply = Reply.from_fields(fields)
                    future = self.waiting.pop(reply.job_id, None)
                    if future is not None and not future.done():
                        future.set_result(reply)
                if entries:
                    await self.redis.xdel(self.reply_stream, *[entry_id for entry_id, _ in entries])
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("reply reader: %s", error)
                await asyncio.sleep(0.2)

    async def _sample_stats(self) -> None:
        """Queue depth and throughput (a moving average of the workers' completed-images counter)."""
        previous: tuple[float, int] | None = None
        while True:
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.xlen(self.settings.stream)
                pipe.get(completed_counter_key(self.settings))
                depth, completed = await pipe.execute()
                now, completed = time.monotonic(), int(completed or 0)
                self.queue_depth = depth
                self.metrics.queue_depth.set(depth)
                if previous is not None and now > previous[0] and completed >= previous[1]:
                    rate = (completed - previous[1]) / (now - previous[0])
                    if rate > 0 or depth == 0:
                        self.throughput = rate if self.throughput == 0 else 0.7 * self.throughput + 0.3 * rate
                        self.metrics.throughput.set(self.throughput)
                previous = (now, completed)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("stats: %s", error)
            await asyncio.sleep(1.0)

    def retry_after_s(self, depth: int) -> int:
        if self.throughput <= 0:
            return 1
        return max(1, min(60, math.ceil(depth / self.throughput)))

    async def submit(self, image: DecodedImage, scale: int, deadline: float) -> Reply:
        settings = self.settings
        height, width = image.rgb.shape[:2]
        job = Job(
            job_id=uuid.uuid4().hex, reply_to=self.reply_stream, scale=scale, height=height, width=width,
            deadline=deadline, enqueued_at=time.time(), pixels=np.ascontiguousarray(image.rgb, dtype=np.float32).tobytes(),
        )
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiting[job.job_id] = future
        flat = [item for pair in job.to_fields().items() for item in pair]
        try:
            entry_id, depth = await self.enqueue_script(keys=[settings.stream], args=[settings.queue_max_length, *flat])
        except RedisError as error:
            self.waiting.pop(job.job_id, None)
            raise ApiError(503, "queue_unavailable", f"the job queue is unreachable: {error}", "error") from error
        if not entry_id:
            self.waiting.pop(job.job_id, None)
            retry = self.retry_after_s(depth)
            raise ApiError(
                429, "queue_full", f"{depth} jobs are queued (limit {settings.queue_max_length}); retry in {retry} s",
                "rejected_429", {"Retry-After": str(retry)},
            )
        try:
            return await asyncio.wait_for(future, timeout=max(0.0, deadline - time.time()))
        except TimeoutError as error:
            # Not yet read by a worker: delete it so nobody runs it; if read, the worker drops it as expired.
            with contextlib.suppress(RedisError):
                await self.redis.xdel(settings.stream, entry_id)
            raise ApiError(504, "deadline_exceeded", "the job was not finished before its deadline", "timeout_504") from error
        finally:
            self.waiting.pop(job.job_id, None)

    async def submit_many(self, images: list[DecodedImage], scale: int, deadline: float) -> list[Reply]:
        """Like :meth:`submit` for several images enqueued together (all or none), so an idle worker
        batches them; the replies in order. 429 when they do not all fit in the queue."""
        settings = self.settings
        jobs = [
            Job(job_id=uuid.uuid4().hex, reply_to=self.reply_stream, scale=scale, height=image.rgb.shape[0],
                width=image.rgb.shape[1], deadline=deadline, enqueued_at=time.time(),
                pixels=np.ascontiguousarray(image.rgb, dtype=np.float32).tobytes())
            for image in images
        ]
        if not jobs:
            return []
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in jobs]
        self.waiting.update({job.job_id: future for job, future in zip(jobs, futures, strict=True)})
        flat = [[item for pair in job.to_fields().items() for item in pair] for job in jobs]
        try:
            try:
                ids, depth = await self.enqueue_many_script(
                    keys=[settings.stream], args=[settings.queue_max_length, len(flat[0]), *(v for f in flat for v in f)]
                )
            except RedisError as error:
                raise ApiError(503, "queue_unavailable", f"the job queue is unreachable: {error}", "error") from error
            if not ids:
                retry = self.retry_after_s(depth + len(jobs))
                raise ApiError(
                    429, "queue_full",
                    f"{depth} jobs are queued and this photo needs {len(jobs)} (limit {settings.queue_max_length}); "
                    f"retry in {retry} s", "rejected_429", {"Retry-After": str(retry)},
                )
            try:
                return list(await asyncio.wait_for(asyncio.gather(*futures), timeout=max(0.0, deadline - time.time())))
            except TimeoutError as error:
                with contextlib.suppress(RedisError):
                    await self.redis.xdel(settings.stream, *ids)
                raise ApiError(504, "deadline_exceeded", "the jobs were not finished before their deadline", "timeout_504") from error
        finally:
            for job in jobs:
                self.waiting.pop(job.job_id, None)

    async def readiness(self) -> dict:
        try:
            await asyncio.wait_for(self.redis.ping(), 1.0)
        except Exception as error:
            return {"ready": False, "redis": False, "reason": f"redis unreachable: {error}", "workers": []}
        workers = []
        try:
            keys = [key async for key in self.redis.scan_iter(match=heartbeat_pattern(self.settings), count=100)]
            values = await self.redis.mget(keys) if keys else []
            workers = [json.loads(value) for value in values if value]
        except Exception as error:
            return {"ready": False, "redis": False, "reason": f"redis error: {error}", "workers": []}
        warmed = [worker for worker in workers if worker.get("warmed")]
        reason = None if warmed else "no worker with warmed models is alive"
        return {"ready": bool(warmed), "redis": True, "reason": reason, "workers": workers}


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    metrics = ApiMetrics()
    broker = JobBroker(settings, metrics)

    def limits_for(scale: int) -> ImageLimits:
        """The byte and pixel limits, with the side limit tightened so the output stays within max_output_side."""
        side = max(1, min(settings.max_input_side, settings.max_output_side // scale))
        return ImageLimits(settings.max_upload_bytes, min(settings.max_input_pixels, side * side), side, settings.min_input_side)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await broker.start()
        yield
        await broker.stop()

    app = FastAPI(
        title="PortraitSR",
        version="0.1.0",
        description="Face super-resolution (×4, ×8) behind a Redis-queued, batched ONNX Runtime worker pool.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.broker, app.state.metrics = settings, broker, metrics

    def error_response(error: ApiError, request_id: str) -> JSONResponse:
        return JSONResponse(
            {"error": error.code, "detail": error.detail, "request_id": request_id},
            status_code=error.status,
            headers={"X-Request-ID": request_id, **error.headers},
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        metrics.requests.labels("bad_input").inc()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        return error_response(ApiError(400, "bad_request", details, "bad_input"), request_id)

    async def read_image_bytes(request: Request) -> bytes:
        """The image bytes, raw body or multipart field ``image``; the byte limit holds for both."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + MULTIPART_OVERHEAD:
            raise ApiError(413, "too_large", f"the body has {declared} bytes; the limit is {settings.max_upload_bytes}", "bad_input")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_upload_bytes + MULTIPART_OVERHEAD:
                raise ApiError(413, "too_large", f"the body is over the limit of {settings.max_upload_bytes} bytes", "bad_input")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            if len(body) > settings.max_upload_bytes:
                raise ApiError(413, "too_large", f"the body is over the limit of {settings.max_upload_bytes} bytes", "bad_input")
            return bytes(body)
        request._body = bytes(body)  # Starlette parses the form from the body already read
        try:
            form = await request.form(max_files=1, max_fields=4)
        except Exception as error:
            raise ApiError(400, "empty_body", f"the multipart form cannot be read: {error}", "bad_input") from error
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "empty_body", "the multipart form has no file field `image`", "bad_input")
        return await upload.read()

    @app.post(
        "/upscale",
        summary="Upscale a face image",
        response_class=Response,
        openapi_extra=UPSCALE_OPENAPI,
        responses={200: {"description": "the upscaled image"}},
    )
    async def upscale(
        request: Request,
        scale: int = Query(8, description="upscaling factor: 4 or 8"),
        format: str = Query("png", description="output format: png, jpeg or webp"),
    ) -> Response:
        started = time.perf_counter()
        incoming_id = request.headers.get("x-request-id", "")
        request_id = incoming_id if REQUEST_ID_PATTERN.match(incoming_id) else uuid.uuid4().hex
        try:
            if scale not in SCALES:
                raise ApiError(400, "bad_scale", f"scale must be one of {', '.join(map(str, SCALES))}, not {scale}", "bad_input")
            if format not in OUTPUT_FORMATS:
                raise ApiError(400, "bad_format", f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {format!r}", "bad_input")
            data = await read_image_bytes(request)
            try:
                if len(data) <= INLINE_CODEC_BYTES:
                    image = decode_image(data, limits_for(scale))
                else:
                    image = await run_in_threadpool(decode_image, data, limits_for(scale))
            except ImageInputError as error:
                raise ApiError(error.status, error.code, error.reason, "bad_input") from error
            deadline = time.time() + settings.job_deadline_s
            reply = await broker.submit(image, scale, deadline)
            if reply.status in ("bad_job", "no_model"):
                raise ApiError(400, reply.status, reply.meta.get("error", reply.status), "bad_input")
            if reply.status != "ok":
                if reply.status == "dead_lettered":
                    metrics.dead_letters.inc()
                raise ApiError(500, reply.status, reply.meta.get("error", "the job failed"), "error")

            def encode() -> bytes:
                return encode_image(compose_output(reply.sr_array(), image.alpha), format)

            small = len(reply.pixels) <= 4 * INLINE_CODEC_BYTES and format == "png"
            body = encode() if small else await run_in_threadpool(encode)
        except ApiError as error:
            metrics.requests.labels(error.outcome).inc()
            metrics.request_seconds.labels(error.outcome).observe(time.perf_counter() - started)
            return error_response(error, request_id)

        meta = reply.meta
        total_ms = (time.perf_counter() - started) * 1000
        metrics.requests.labels("ok").inc()
        metrics.request_seconds.labels("ok").observe(total_ms / 1000)
        metrics.queue_wait_seconds.observe(meta["queue_wait_ms"] / 1000)
        metrics.inference_seconds.labels(meta["provider"]).observe(meta["inference_ms"] / 1000)
        metrics.batch_size.labels(meta["provider"]).observe(meta["batch_size"])
        headers = {
            "X-Request-ID": request_id,
            "Server-Timing": f"queue;dur={meta['queue_wait_ms']:.1f}, inference;dur={meta['inference_ms']:.1f}, total;dur={total_ms:.1f}",
            "X-Queue-Wait-Ms": f"{meta['queue_wait_ms']:.1f}",
            "X-Inference-Ms": f"{meta['inference_ms']:.1f}",
            "X-Batch-Size": str(meta["batch_size"]),
            "X-Execution-Provider": meta["provider"],
        }
        return Response(body, media_type=OUTPUT_FORMATS[format], headers=headers)

    from service.restore_route import add_restore_route  # here: it imports this module

    add_restore_route(app, settings, broker, metrics, read_image_bytes, error_response)

    @app.get("/livez", summary="The API process is alive")
    async def livez() -> dict:
        return {"alive": True}

    @app.get(
        "/readyz",
        summary="Ready: Redis reachable and at least one worker alive with warmed models",
        responses={503: {"description": "not ready; the body says why"}},
    )
    async def readyz() -> JSONResponse:
        state = await broker.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = STATIC_DIR / "index.html"
        if not page.is_file():
            return JSONResponse({"error": "no_page", "detail": "service/static/index.html is missing"}, status_code=404)
        return FileResponse(page, media_type="text/html")

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
