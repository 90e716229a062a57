"""What routes get through ``Depends``: settings, the job broker, metrics, the face detector, the API-key check.

Everything comes from ``app.state`` (set by :func:`service.http.app.create_app`), so tests can replace
any of it with ``app.dependency_overrides`` and check the HTTP mapping without Redis.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.core.metrics import ApiMetrics, RequestOutcome
from service.core.settings import ServiceSettings
from service.faces.detector import LazyDetector
from service.http.auth import ApiKeys
from service.http.errors import ApiError
from service.queue.broker import JobBroker


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_broker(request: Request) -> JobBroker:
    return request.app.state.broker


def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


def get_detector(request: Request) -> LazyDetector:
    return request.app.state.detector


def get_api_keys(request: Request) -> ApiKeys | None:
    return request.app.state.api_keys


def is_authenticated(request: Request, keys: Annotated[ApiKeys | None, Depends(get_api_keys)]) -> bool:
    """True without API keys, or with a valid ``Authorization: Bearer <key>``."""
    return keys is None or keys.accepts(request.headers.get("authorization"))


def require_api_key(
    authenticated: Annotated[bool, Depends(is_authenticated)], metrics: Annotated[ApiMetrics, Depends(get_metrics)]
) -> None:
    if not authenticated:
        metrics.requests.labels(RequestOutcome.UNAUTHORIZED.value).inc()
        raise ApiError(
            401, "unauthorized", "this API needs `Authorization: Bearer <key>` with a valid key", RequestOutcome.UNAUTHORIZED,
            {"WWW-Authenticate": 'Bearer realm="portraitsr"'},
        )


Settings = Annotated[ServiceSettings, Depends(get_settings)]
Broker = Annotated[JobBroker, Depends(get_broker)]
Metrics = Annotated[ApiMetrics, Depends(get_metrics)]
Detector = Annotated[LazyDetector, Depends(get_detector)]
Authenticated = Annotated[bool, Depends(is_authenticated)]
