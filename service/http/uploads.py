"""Reading an uploaded image from a request: raw body or multipart field ``image``, within limits.

Shared by every image endpoint. The byte limit holds for both forms; a client that goes away
mid-body gets a quiet 400 (nobody reads it) instead of a traceback in the log.
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from service.core.images import DecodedImage, ImageLimits, decode_image
from service.core.metrics import RequestOutcome
from service.http.errors import ApiError

# Small images are decoded on the event loop: cheaper than a hop to the thread pool.
INLINE_CODEC_BYTES = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # room for a form's boundaries and headers around the image


def _too_large(limit: int, declared: str | None = None) -> ApiError:
    size = f"has {declared} bytes" if declared else "is over the limit"
    return ApiError(413, "too_large", f"the body {size}; the limit is {limit} bytes", RequestOutcome.BAD_INPUT)


async def read_image_bytes(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise _too_large(max_bytes, declared)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes + MULTIPART_OVERHEAD:
                raise _too_large(max_bytes)
    except ClientDisconnect as error:
        raise ApiError(400, "incomplete_body", "the client went away before sending the whole body", RequestOutcome.BAD_INPUT) from error
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
        return bytes(body)
    request._body = bytes(body)  # Starlette parses the form from the body already read
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as error:
        raise ApiError(400, "empty_body", f"the multipart form cannot be read: {error}", RequestOutcome.BAD_INPUT) from error
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise ApiError(400, "empty_body", "the multipart form has no file field `image`", RequestOutcome.BAD_INPUT)
    return await upload.read()


async def decode_upload(data: bytes, limits: ImageLimits) -> DecodedImage:
    """The decoded image, or :class:`service.core.images.ImageInputError` (a refusal, see ``to_api_error``)."""
    if len(data) <= INLINE_CODEC_BYTES:
        return decode_image(data, limits)
    return await run_in_threadpool(decode_image, data, limits)
