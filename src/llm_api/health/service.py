"""Health of the gateway and its engine, in the seed's shape."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from llm_api.chat.activity import SessionActivity
from llm_api.engine.client import EngineClient
from llm_api.engine.metrics import EngineLoad, parse_engine_load
from llm_api.errors import ApiError, EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HealthReport:
    engine_healthy: bool
    active_sessions: int
    load: EngineLoad | None
    timestamp: datetime


class HealthService:
    def __init__(self, engine: EngineClient, activity: SessionActivity) -> None:
        self._engine = engine
        self._activity = activity

    async def check(self) -> HealthReport:
        healthy, load, active = await asyncio.gather(
            self._engine.is_healthy(), self._load(), self._active_sessions()
        )
        return HealthReport(
            engine_healthy=healthy,
            active_sessions=active,
            load=load if healthy else None,
            timestamp=datetime.now(UTC),
        )

    async def _active_sessions(self) -> int:
        try:
            return await self._activity.active_count()
        except ApiError as exc:
            log.warning("active sessions unknown: %s", exc.type)
            return 0

    async def _load(self) -> EngineLoad | None:
        try:
            text = await self._engine.metrics_text()
        except EngineError as exc:
            log.info("engine metrics unavailable: %s", exc.type)
            return None
        try:
            return parse_engine_load(text)
        except ValueError:
            log.warning("engine metrics could not be parsed")
            return None
