"""``GET /api/health`` (engine-aware) and ``GET /ping`` (never touches the engine)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from llm_api.health.service import HealthService
from llm_api.responses import json_response
from llm_api.state import AppState

router = APIRouter(tags=["health"])


async def get_health_service(request: Request) -> HealthService:
    return AppState.of(request).health


HealthServiceDep = Annotated[HealthService, Depends(get_health_service)]


class HealthPublic(BaseModel):
    status: str
    vllm_healthy: bool
    active_sessions: int
    vllm_running_requests: int | None
    vllm_waiting_requests: int | None
    timestamp: datetime


class Pong(BaseModel):
    status: str


@router.get(
    "/api/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "The engine is not answering"}},
)
async def health(service: HealthServiceDep) -> Response:
    report = await service.check()
    body = HealthPublic(
        status="healthy" if report.engine_healthy else "unhealthy",
        vllm_healthy=report.engine_healthy,
        active_sessions=report.active_sessions,
        vllm_running_requests=report.load.running if report.load else None,
        vllm_waiting_requests=report.load.waiting if report.load else None,
        timestamp=report.timestamp,
    )
    return json_response(
        200 if report.engine_healthy else 503,
        body.model_dump(mode="json"),
        {"Cache-Control": "no-store"},
    )


@router.get("/ping", response_model=Pong)
async def ping() -> Pong:
    return Pong(status="ok")
