"""``/api/metrics`` figures, and the engine-health sampler behind ``uptime``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_api.db.database import Database
from llm_api.db.engine import database_url
from llm_api.engine.client import EngineClient
from llm_api.observability import metrics
from llm_api.observability.request_log import DAY_SECONDS, RequestLog
from llm_api.observability.resources import (
    GpuProbe,
    Resources,
    format_bytes,
    prime_cpu_percent,
    read_resources,
)
from llm_api.settings import Settings

log = logging.getLogger(__name__)

ACTIVE_SESSION_SECONDS = 30 * 60


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    active_sessions: int
    total_requests_24h: int
    average_response_time: float | None
    error_rate: float | None
    uptime: float | None
    uptime_seconds: float
    resources: Resources
    timestamp: datetime


ActiveSessions = Callable[[], Awaitable[int]]


class MetricsService:
    def __init__(
        self, request_log: RequestLog, gpu: GpuProbe, active_sessions: ActiveSessions | None
    ) -> None:
        self._log = request_log
        self._gpu = gpu
        self._active_sessions = active_sessions
        self._started = time.monotonic()

    async def snapshot(self) -> MetricsSnapshot:
        stats = await self._log.stats(session_window=ACTIVE_SESSION_SECONDS)
        resources = await asyncio.to_thread(read_resources, self._gpu)
        # The conversation store's count when there is one (the same figure /api/health
        # gives); otherwise distinct session ids in the request log.
        active = await self._active_sessions() if self._active_sessions else stats.active_sessions
        return MetricsSnapshot(
            active_sessions=active,
            total_requests_24h=stats.total,
            average_response_time=stats.average_latency,
            error_rate=stats.error_rate,
            uptime=stats.uptime_percent,
            uptime_seconds=time.monotonic() - self._started,
            resources=resources,
            timestamp=datetime.now(UTC),
        )


def snapshot_body(snap: MetricsSnapshot) -> dict[str, Any]:
    """The seed's shape, then the extra fields (README, "Metrics and logs")."""
    r = snap.resources
    return {
        "active_sessions": snap.active_sessions,
        "total_requests_24h": snap.total_requests_24h,
        "average_response_time": _round(snap.average_response_time, 4),
        "error_rate": _round(snap.error_rate, 4),
        "uptime": _round(snap.uptime, 2),
        "resource_usage": {
            "memory": format_bytes(r.memory_used),
            "gpu_memory": format_bytes(r.gpu.used if r.gpu else None),
            "cpu_percent": round(r.cpu_percent, 1),
            "memory_total": format_bytes(r.memory_total),
            "memory_percent": round(r.memory_percent, 1),
            "gpu_memory_total": format_bytes(r.gpu.total if r.gpu else None),
            "gpu_count": r.gpu.devices if r.gpu else 0,
        },
        "uptime_seconds": round(snap.uptime_seconds, 1),
        "window_seconds": DAY_SECONDS,
        "timestamp": snap.timestamp.isoformat(),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def request_log_url(settings: Settings) -> str:
    """LLM_API_REQUEST_LOG_URL, else the conversation store's database (same rules)."""
    return database_url(settings.request_log_url or settings.database_url, settings.data_dir)


async def _sample_engine_health(
    engine: EngineClient, request_log: RequestLog, every: float
) -> None:
    while True:
        request_log.add_health_sample(await engine.is_healthy())
        await asyncio.sleep(every)


@dataclass(frozen=True, slots=True)
class Observability:
    request_log: RequestLog
    metrics: MetricsService


@asynccontextmanager
async def observability(
    settings: Settings,
    engine: EngineClient,
    db: Database,
    active_sessions: ActiveSessions | None = None,
) -> AsyncIterator[Observability]:
    """Lifespan part: the request log, the health sampler, the metrics service.

    The request log lives in the conversation store's database (``db``, sharing its write
    path) unless LLM_API_REQUEST_LOG_URL names another one, which then gets its own.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = request_log_url(settings)
    own_db = None
    if url != database_url(settings.database_url, settings.data_dir):
        own_db = db = Database.connect(url, busy_timeout=settings.database_busy_timeout)
    request_log = RequestLog(
        db,
        flush_seconds=settings.request_log_flush_seconds,
        retention_seconds=settings.request_log_retention_days * DAY_SECONDS,
    )
    try:
        await request_log.open()
    except BaseException:
        if own_db is not None:
            await own_db.close()
        raise
    gpu = GpuProbe()
    prime_cpu_percent()
    sampler = asyncio.create_task(
        _sample_engine_health(engine, request_log, settings.health_sample_seconds),
        name="engine-health-sampler",
    )
    try:
        yield Observability(request_log, MetricsService(request_log, gpu, active_sessions))
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await request_log.close()
        if own_db is not None:
            await own_db.close()
        await asyncio.to_thread(gpu.close)
        metrics.worker_exited(os.getpid())
