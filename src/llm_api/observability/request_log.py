"""The request log: one metadata-only row per API request, shared by every worker.

``/api/metrics`` is computed from these rows, so its figures are right with several workers
and survive restarts. Rows hold no content: route, status, latency, token counts, session id,
key name. Engine health samples (one per worker every few seconds) give ``uptime``.

Writes are buffered per worker and flushed every ``flush_seconds`` in one transaction, so the
request path never waits for the database. Rows older than the retention are deleted.

The store is SQLite in the data directory by default (WAL mode, so several worker processes
write safely) or any SQLAlchemy async URL, PostgreSQL included. It uses its own tables and
creates them itself; it does not depend on the conversation store's migrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

DAY_SECONDS = 24 * 3600

metadata = MetaData()

request_log = Table(
    "obs_request_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),  # unix seconds when the request arrived
    Column("request_id", String(128), nullable=False),
    Column("route", String(200), nullable=False),
    Column("method", String(10), nullable=False),
    Column("status", Integer, nullable=False),
    Column("latency", Float, nullable=False),  # seconds, to the last byte / event
    Column("error", Boolean, nullable=False),  # 5xx or an in-stream error event
    Column("key_name", String(200), nullable=True),
    Column("session_id", String(100), nullable=True),
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    Index("ix_obs_request_log_ts", "ts"),
)

engine_health = Table(
    "obs_engine_health",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("healthy", Boolean, nullable=False),
    Index("ix_obs_engine_health_ts", "ts"),
)


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    ts: float
    request_id: str
    route: str
    method: str
    status: int
    latency: float
    error: bool
    key_name: str | None = None
    session_id: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class RequestStats:
    total: int
    average_latency: float | None
    error_rate: float | None
    active_sessions: int
    uptime_percent: float | None


class RequestLog:
    def __init__(
        self,
        url: str,
        *,
        flush_seconds: float = 1.0,
        retention_seconds: float = 7 * DAY_SECONDS,
    ) -> None:
        self._url = url
        self._flush_seconds = flush_seconds
        self._retention = retention_seconds
        self._pending: list[dict[str, Any]] = []
        self._pending_health: list[dict[str, Any]] = []
        self._engine: AsyncEngine | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._last_prune = 0.0

    # --- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        engine = create_async_engine(self._url)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        self._engine = engine
        await self._create_tables()
        self._flusher = asyncio.create_task(self._flush_forever(), name="request-log-flush")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self._engine is not None:
            await self.flush()
            await self._engine.dispose()
            self._engine = None

    async def _create_tables(self) -> None:
        # Several workers start at once; one may create a table between another's
        # existence check and its CREATE. The loser just checks again.
        for attempt in range(3):
            try:
                async with self.engine.begin() as conn:
                    await conn.run_sync(metadata.create_all)
            except (OperationalError, ProgrammingError):
                if attempt == 2:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
            else:
                return

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("RequestLog used before open()")
        return self._engine

    # --- writing --------------------------------------------------------------------------
    def add(self, entry: RequestLogEntry) -> None:
        self._pending.append(
            {
                "ts": entry.ts,
                "request_id": entry.request_id,
                "route": entry.route,
                "method": entry.method,
                "status": entry.status,
                "latency": entry.latency,
                "error": entry.error,
                "key_name": entry.key_name,
                "session_id": entry.session_id,
                "prompt_tokens": entry.prompt_tokens,
                "completion_tokens": entry.completion_tokens,
            }
        )

    def add_health_sample(self, healthy: bool, ts: float | None = None) -> None:
        self._pending_health.append({"ts": ts or time.time(), "healthy": healthy})

    async def flush(self) -> None:
        rows, self._pending = self._pending, []
        health, self._pending_health = self._pending_health, []
        if not rows and not health:
            return
        try:
            async with self.engine.begin() as conn:
                if rows:
                    await conn.execute(insert(request_log), rows)
                if health:
                    await conn.execute(insert(engine_health), health)
        except Exception:
            # Metrics must never take the API down: keep the rows for the next try, bounded.
            log.warning("request log flush failed; will retry", exc_info=True)
            self._pending = (rows + self._pending)[-100_000:]
            self._pending_health = (health + self._pending_health)[-10_000:]
            return
        now = time.time()
        if now - self._last_prune > 600:
            self._last_prune = now
            await self._prune(now - self._retention)

    async def _prune(self, before: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(request_log).where(request_log.c.ts < before))
            await conn.execute(delete(engine_health).where(engine_health.c.ts < before))

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            await self.flush()

    # --- reading --------------------------------------------------------------------------
    async def stats(
        self, *, now: float | None = None, window: float = DAY_SECONDS, session_window: float
    ) -> RequestStats:
        """Figures over the last ``window`` seconds, from every worker's flushed rows."""
        await self.flush()
        now = now or time.time()
        since = now - window
        t = request_log.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        func.count(),
                        func.avg(t.latency),
                        func.sum(func.cast(t.error, Integer)),
                    ).where(t.ts >= since)
                )
            ).one()
            sessions = (
                await conn.execute(
                    select(func.count(func.distinct(t.session_id))).where(
                        t.ts >= now - session_window, t.session_id.is_not(None)
                    )
                )
            ).scalar_one()
            h = engine_health.c
            health = (
                await conn.execute(
                    select(func.count(), func.sum(func.cast(h.healthy, Integer))).where(
                        h.ts >= since
                    )
                )
            ).one()
        total = int(row[0])
        errors = int(row[2] or 0)
        samples, healthy = int(health[0]), int(health[1] or 0)
        return RequestStats(
            total=total,
            average_latency=float(row[1]) if total else None,
            error_rate=errors / total if total else None,
            active_sessions=int(sessions),
            uptime_percent=100.0 * healthy / samples if samples else None,
        )


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; busy_timeout: workers queue instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
