"""The HTTP API: the app factory. Routes live in :mod:`service.http.routers`, the queue end in
:mod:`service.queue.broker`, the error shape in :mod:`service.http.errors`."""

from __future__ import annotations

import contextlib

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from service.core.metrics import ApiMetrics, RequestOutcome
from service.core.settings import ServiceSettings
from service.faces.detector import DetectorSettings, LazyDetector
from service.http.auth import ApiKeys
from service.http.errors import install_error_handlers
from service.http.routers import health, page, restore, upscale
from service.http.routers.page import STATIC_DIR
from service.http.security_headers import SecurityHeadersMiddleware
from service.queue.broker import JobBroker


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    broker = app.state.broker
    await broker.start()
    yield
    await broker.stop()


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    metrics = ApiMetrics()
    # /docs from assets inside the package: it works offline and under a CSP. No /redoc: ReDoc
    # fetches its logo from cdn.redoc.ly whatever the options.
    app = FastAPIOffline(
        redoc_url=None,
        title="PortraitSR",
        version="0.1.0",
        description="Face super-resolution (×4, ×8) behind a Redis-queued, batched ONNX Runtime worker pool; "
        "whole photos: the faces found, restored and pasted back (`/restore`).",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # else Swagger UI shows a badge from validator.swagger.io
    )
    app.state.settings, app.state.metrics = settings, metrics
    app.state.broker = JobBroker(settings, metrics)
    app.state.detector = LazyDetector(  # sessions on first use, on the API's CPU, one thread per photo
        DetectorSettings(min_face_px=settings.detector_min_face_px), runtime=settings.runtime_request(threads=1, device="cpu")
    )
    app.state.api_keys = ApiKeys.from_file(settings.api_keys_file) if settings.api_keys_file else None
    install_error_handlers(app, count_bad_input=metrics.requests.labels(RequestOutcome.BAD_INPUT.value).inc)
    for router in (upscale.router, restore.router, health.router, page.router):
        app.include_router(router)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def route_paths(app: FastAPI) -> set[str]:
    """Every path the app answers (included routers keep their routes on ``original_router``)."""
    paths: set[str] = set()
    pending = list(app.routes)
    while pending:
        route = pending.pop()
        if hasattr(route, "original_router"):
            pending.extend(route.original_router.routes)
        elif getattr(route, "path", None):
            paths.add(route.path)
    return paths
