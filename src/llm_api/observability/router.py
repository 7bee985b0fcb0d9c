"""``GET /metrics`` (Prometheus text) and ``GET /api/metrics`` (the seed's JSON figures).

Both need a key with the ``admin`` scope when ``LLM_API_AUTH=required`` (the scope is set
where app.py includes these routers); with auth disabled they are open like every route.
``LLM_API_METRICS_PUBLIC=true`` opens ``/metrics`` alone, for scrapers that hold no key:
that is why it has a router of its own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from llm_api.observability.metrics import exposition
from llm_api.observability.service import MetricsService, snapshot_body
from llm_api.responses import json_response
from llm_api.state import AppState

router = APIRouter(tags=["observability"])
prometheus_router = APIRouter(tags=["observability"])


async def get_metrics_service(request: Request) -> MetricsService:
    return AppState.of(request).metrics


MetricsServiceDep = Annotated[MetricsService, Depends(get_metrics_service)]


@prometheus_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def prometheus_metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


@router.get("/api/metrics")
async def api_metrics(service: MetricsServiceDep) -> Response:
    snapshot = await service.snapshot()
    return json_response(200, snapshot_body(snapshot), {"Cache-Control": "no-store"})
