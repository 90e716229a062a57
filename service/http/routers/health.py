"""Health and metrics: ``/livez``, ``/readyz`` (open; worker details only for authenticated callers), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.http.dependencies import Authenticated, Broker, Metrics, require_api_key

router = APIRouter()


@router.get("/livez", summary="The API process is alive")
async def livez() -> dict:
    return {"alive": True}


@router.get(
    "/readyz",
    summary="Ready: Redis reachable and at least one worker alive with warmed models",
    responses={503: {"description": "not ready; the body says why"}},
)
async def readyz(broker: Broker, authenticated: Authenticated) -> JSONResponse:
    state = broker.readiness(detailed=authenticated)
    return JSONResponse(state, status_code=200 if state["ready"] else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response, dependencies=[Depends(require_api_key)])
async def metrics_endpoint(metrics: Metrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
