"""Uvicorn's h11 protocol with the limits a public server needs and uvicorn lacks.

- the request head (request line + headers) must arrive within ``header_timeout_s`` of the
  connection opening or of the previous response, else 408 and close (slow-header clients);
- the head must fit in ``max_header_bytes``, else 431 and close (memory per connection);
- a body that stalls for ``body_timeout_s`` closes the connection (the request ends as a
  client disconnect);
- past ``max_connections`` open connections a new one gets 429 with Retry-After and is closed.

And a server whose SIGTERM drain is bounded (:class:`DrainingServer`).

h11 (pure Python) rather than httptools: httptools has no header size limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

PHRASES = {408: "Request Timeout", 429: "Too Many Requests", 431: "Request Header Fields Too Large"}


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_s: float = 15.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 16 * 1024
    max_connections: int = 1000


def raw_error(status: int, code: str, detail: str, extra_headers: str = "") -> bytes:
    body = json.dumps({"error": code, "detail": detail, "request_id": ""}).encode()
    head = (
        f"HTTP/1.1 {status} {PHRASES[status]}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra_headers}\r\n"
    )
    return head.encode() + body


class HardenedH11Protocol(H11Protocol):
    limits = HttpLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(429, "too_many_connections", "the server has too many open connections; retry", "Retry-After: 1\r\n")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # a request head is (still) coming
            pending = self.conn.trailing_data[0] + data
            end = pending.find(b"\r\n\r\n")
            if (len(pending) if end < 0 else end) > self.limits.max_header_bytes:
                self._refuse(431, "headers_too_large", f"the request head is over {self.limits.max_header_bytes} bytes")
                return
            if self.head_timer is None:
                self._arm_head_timer()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        if self.conn.their_state is h11.SEND_BODY:
            self.body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head has the same deadline

    # -- helpers -------------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
        self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)

    def _cancel_timers(self) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = None

    def _head_timeout(self) -> None:
        self.head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self.conn.trailing_data[0]:  # half a head: tell the client; an idle keep-alive just closes
                self._refuse(408, "header_timeout", f"the request head did not arrive within {self.limits.header_timeout_s:g} s")
            else:
                self.transport.close()

    def _body_timeout(self) -> None:
        self.body_timer = None
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.logger.info("closing a connection whose body stalled for %g s", self.limits.body_timeout_s)
            self.transport.close()

    def _refuse(self, status: int, code: str, detail: str, extra_headers: str = "") -> None:
        self._cancel_timers()
        self.transport.write(raw_error(status, code, detail, extra_headers))
        self.transport.close()


def hardened_protocol(limits: HttpLimits) -> type[HardenedH11Protocol]:
    """The protocol class to give ``uvicorn.run(http=...)``, with these limits."""
    return type("PortraitSRProtocol", (HardenedH11Protocol,), {"limits": limits})


class DrainingServer(uvicorn.Server):
    """SIGTERM: no new connections; requests in flight get ``drain_s`` to finish, then those still
    waiting for a worker are answered by ``release`` (503) and uvicorn cuts what is left
    (``timeout_graceful_shutdown``, set a little longer). Bounded, because uvicorn ignores a second
    SIGTERM: an API waiting out its requests' deadlines could not be stopped short of SIGKILL."""

    def __init__(self, config: uvicorn.Config, release: Callable[[], None], drain_s: float):
        super().__init__(config)
        self.release, self.drain_s = release, drain_s

    async def shutdown(self, sockets=None) -> None:
        asyncio.get_running_loop().call_later(self.drain_s, self.release)
        await super().shutdown(sockets)
