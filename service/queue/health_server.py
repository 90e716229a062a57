"""A tiny HTTP server on asyncio for the worker's /livez, /readyz and /metrics.

The worker needs three GET endpoints and nothing else; a web framework would also bring signal
handling that fights the worker's own graceful shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Handler = Callable[[], Awaitable[tuple[int, str, bytes]]]  # -> (status, content type, body)
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable", 500: "Internal Server Error"}


async def start_health_server(host: str, port: int, routes: dict[str, Handler]) -> asyncio.Server | None:
    """Serve ``routes`` (path -> handler) on host:port; None (and a warning) if the port is taken."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            if method not in ("GET", "HEAD"):
                status, content_type, body = 405, "text/plain", b"method not allowed\n"
            elif path in routes:
                status, content_type, body = await routes[path]()
            else:
                status, content_type, body = 404, "text/plain", b"not found\n"
            head = (
                f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except Exception as error:  # a broken client must not hurt the worker
            log.debug("health request failed: %s", error)
        finally:
            writer.close()

    try:
        return await asyncio.start_server(handle, host, port)
    except OSError as error:
        log.warning("worker health/metrics server not started on %s:%s: %s", host, port, error)
        return None
