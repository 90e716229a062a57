"""The API's error shape: ``{"error": code, "detail": reason, "request_id": id}`` with ``X-Request-ID``.

Every answer that is not a success uses it: refusals raised as :class:`ApiError`, request
validation errors, and Starlette's own 404/405. :func:`to_api_error` is the one place where the
queue's errors and refused images get their HTTP status, error code and metric outcome.
"""

from __future__ import annotations

import re
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core.images import ImageInputError, ImageProblem
from service.core.input_quality import ModelUnavailable
from service.core.metrics import RequestOutcome
from service.queue.errors import DeadlinePassed, QueueError, QueueFull, QueueUnavailable, ShuttingDown

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A query parameter that fails to parse gets that parameter's own error code.
PARAMETER_ERROR_CODES = {"scale": "bad_scale", "format": "bad_format", "model": "bad_model"}


# The HTTP status of each refused image.
IMAGE_STATUS = {
    ImageProblem.EMPTY: 400,
    ImageProblem.TOO_LARGE: 413,
    ImageProblem.TOO_MANY_PIXELS: 413,
    ImageProblem.TOO_SMALL: 400,
    ImageProblem.CORRUPT: 400,
    ImageProblem.UNSUPPORTED_FORMAT: 415,
    ImageProblem.ANIMATED: 415,
    ImageProblem.BAD_OUTPUT_FORMAT: 400,
}


class ApiError(Exception):
    """A refusal: HTTP status, stable error code, reason for people, metrics outcome, extra headers."""

    def __init__(self, status: int, code: str, detail: str, outcome: RequestOutcome = RequestOutcome.ERROR,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.outcome, self.headers = status, code, detail, outcome, headers or {}


# What a request handler may raise and get answered as a refusal (see to_api_error).
REFUSALS = (ApiError, QueueError, ImageInputError, ModelUnavailable)


def to_api_error(error: ApiError | QueueError | ImageInputError | ModelUnavailable) -> ApiError:
    """The HTTP answer to a refusal of any layer."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ImageInputError):
        return ApiError(IMAGE_STATUS[error.problem], error.code, error.reason, RequestOutcome.BAD_INPUT)
    if isinstance(error, ModelUnavailable):  # the same answer as a worker's NO_MODEL reply
        return ApiError(400, "no_model", str(error), RequestOutcome.BAD_INPUT)
    if isinstance(error, QueueFull):
        return ApiError(429, "queue_full", str(error), RequestOutcome.REJECTED, {"Retry-After": str(error.retry_after_s)})
    if isinstance(error, DeadlinePassed):
        return ApiError(504, "deadline_exceeded", str(error), RequestOutcome.TIMEOUT)
    if isinstance(error, QueueUnavailable):
        return ApiError(503, "queue_unavailable", str(error), RequestOutcome.ERROR)
    if isinstance(error, ShuttingDown):
        return ApiError(503, "shutting_down", str(error), RequestOutcome.ERROR, {"Retry-After": "1"})
    raise TypeError(f"no HTTP answer for {type(error).__name__}")  # a new QueueError needs its mapping here


def request_id_of(request: Request) -> str:
    """The caller's X-Request-ID when it is a safe token (echoed in headers and bodies), else a new one."""
    incoming = request.headers.get("x-request-id", "")
    return incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex


def error_response(error: ApiError, request_id: str) -> JSONResponse:
    return JSONResponse(
        {"error": error.code, "detail": error.detail, "request_id": request_id},
        status_code=error.status,
        headers={"X-Request-ID": request_id, **error.headers},
    )


def _validation_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    names = {e["loc"][-1] for e in errors if len(e["loc"]) >= 2 and e["loc"][0] == "query"}
    code = PARAMETER_ERROR_CODES.get(next(iter(names)), "bad_request") if len(names) == 1 else "bad_request"
    return ApiError(400, code, details, RequestOutcome.BAD_INPUT)


def install_error_handlers(app: FastAPI, count_bad_input=None) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc, request_id_of(request))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if count_bad_input is not None:
            count_bad_input()
        return error_response(_validation_error(exc), request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        error = ApiError(exc.status_code, codes.get(exc.status_code, f"http_{exc.status_code}"), str(exc.detail),
                         headers=dict(exc.headers or {}))
        return error_response(error, request_id_of(request))
