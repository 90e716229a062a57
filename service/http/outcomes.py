"""One image request from start to answer: its id, its latency and its outcome in the metrics.

Both image routes answer through :class:`RequestRecord`, so every request is counted once, with
the outcome its answer had, whichever layer refused it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi import Request
from fastapi.responses import JSONResponse

from service.core.images import ImageInputError
from service.core.input_quality import ModelUnavailable
from service.core.metrics import ApiMetrics, RequestOutcome
from service.http.errors import ApiError, error_response, request_id_of, to_api_error
from service.queue.errors import QueueError
from service.queue.protocol import Reply, ReplyStatus


class RequestRecord:
    def __init__(self, request: Request, metrics: ApiMetrics):
        self.started = time.perf_counter()
        self.request_id = request_id_of(request)
        self.metrics = metrics

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def refused(self, error: ApiError | QueueError | ImageInputError | ModelUnavailable) -> JSONResponse:
        """The error answer to a refusal, counted under its outcome."""
        answer = to_api_error(error)
        self.metrics.observe_request(answer.outcome, self.seconds())
        return error_response(answer, self.request_id)

    def succeeded(self, replies: Sequence[Reply] = ()) -> float:
        """Count a success and the jobs it ran; its latency in seconds."""
        seconds = self.seconds()
        self.metrics.observe_request(RequestOutcome.OK, seconds, replies)
        return seconds

    def check_reply(self, reply: Reply) -> None:
        """Raise the refusal a worker's reply stands for, if it is not a success."""
        if reply.status in (ReplyStatus.BAD_JOB, ReplyStatus.NO_MODEL):
            raise ApiError(400, reply.status.value, reply.meta.error or reply.status.value, RequestOutcome.BAD_INPUT)
        if reply.status != ReplyStatus.OK:
            if reply.status == ReplyStatus.DEAD_LETTERED:
                self.metrics.dead_letters.inc()
            raise ApiError(500, reply.status.value, reply.meta.error or "the job failed", RequestOutcome.ERROR)
