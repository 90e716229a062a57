"""Headers that keep browsers safe with the page and the API: CSP, nosniff, no framing.

The page and the API get a strict policy (same-origin scripts and styles only). ``/docs`` is
served from assets inside the service (the ``fastapi-offline`` package), never from a CDN, and
needs inline script/style for its bootstrap, so it gets a policy that allows that but still
loads nothing from another host. (There is no ``/redoc``: ReDoc loads its logo from a CDN.)
"""

from __future__ import annotations

STRICT_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs",)
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeadersMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): adds the headers to every HTTP response start."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        csp = DOCS_CSP if scope["path"].startswith(DOCS_PATHS) else STRICT_CSP

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *COMMON_HEADERS, (b"content-security-policy", csp.encode())]
            await send(message)

        await self.app(scope, receive, send_with_headers)
