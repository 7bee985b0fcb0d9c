"""The request log: one metadata-only row per API request, shared by every worker.

``/api/metrics`` is computed from these rows, so its figures are right with several workers
and survive restarts. Rows hold no content: route, status, latency, token counts, session id,
key name. Engine health samples (one per worker every few seconds) give ``uptime``.

Writes are buffered per worker and flushed every ``flush_seconds`` in one transaction, so the
request path never waits for the database. Rows older than the retention are deleted.

The tables belong to the database's one Alembic history (revision ``0004``): by default they
sit in the conversation store's database (the SQLite file in the data directory, or
``LLM_API_DATABASE_URL``), or in ``LLM_API_REQUEST_LOG_URL`` when that is set; :meth:`open`
brings whichever database it is to the newest revision, exactly as the store does. The
tables below mirror that revision for queries; they never create anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from llm_api.db.database import Database
from llm_api.db.errors import ErrorWords
from llm_api.db.metadata import metadata
from llm_api.db.types import BigId
from llm_api.errors import Conflict, StoreUnavailable

log = logging.getLogger(__name__)

DAY_SECONDS = 24 * 3600

_WORDS = ErrorWords(unavailable="the request log is unavailable; retry shortly")

request_log = Table(
    "obs_request_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
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
    Column("id", BigId, primary_key=True, autoincrement=True),
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
        db: Database,
        *,
        flush_seconds: float = 1.0,
        retention_seconds: float = 7 * DAY_SECONDS,
    ) -> None:
        self._db = db
        self._flush_seconds = flush_seconds
        self._retention = retention_seconds
        self._pending: list[RequestLogEntry] = []
        self._pending_health: list[dict[str, Any]] = []
        self._open = False
        self._flusher: asyncio.Task[None] | None = None
        self._last_prune = 0.0

    # --- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        # Idempotent, and serialized across workers (advisory lock / SQLite write lock).
        await self._db.migrate()
        self._open = True
        self._flusher = asyncio.create_task(self._flush_forever(), name="request-log-flush")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self._open:
            await self.flush()
            self._open = False

    @property
    def db(self) -> Database:
        if not self._open:
            raise RuntimeError("RequestLog used before open()")
        return self._db

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        # The database's one write path: on SQLite BEGIN IMMEDIATE behind the same lock as
        # the conversation store's writes, so a batch never meets them in the busy handler.
        return self.db.write(_WORDS)

    # --- writing --------------------------------------------------------------------------
    def add(self, entry: RequestLogEntry) -> None:
        # Called on every request: keep the entry as it is; rows are built at flush time.
        self._pending.append(entry)

    def add_health_sample(self, healthy: bool, ts: float | None = None) -> None:
        self._pending_health.append({"ts": ts or time.time(), "healthy": healthy})

    async def flush(self) -> None:
        entries, self._pending = self._pending, []
        health, self._pending_health = self._pending_health, []
        if not entries and not health:
            return
        try:
            async with self._write() as conn:
                if entries:
                    await conn.execute(insert(request_log), [_row(e) for e in entries])
                if health:
                    await conn.execute(insert(engine_health), health)
        except (StoreUnavailable, Conflict):
            # Metrics must never take the API down: keep the rows for the next try, bounded.
            log.warning("request log flush failed; will retry", exc_info=True)
            self._pending = (entries + self._pending)[-100_000:]
            self._pending_health = (health + self._pending_health)[-10_000:]
            return
        now = time.time()
        if now - self._last_prune > 600:
            self._last_prune = now
            try:
                await self._prune(now - self._retention)
            except (StoreUnavailable, Conflict):
                # Same rule as above; an escaped error here would end the flusher task.
                log.warning("request log pruning failed; will retry", exc_info=True)

    async def _prune(self, before: float) -> None:
        async with self._write() as conn:
            await conn.execute(delete(request_log).where(request_log.c.ts < before))
            await conn.execute(delete(engine_health).where(engine_health.c.ts < before))

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except Exception:
                # A bug, not an outage (those are kept and retried above): say so loudly,
                # but keep flushing the requests that follow.
                log.exception("request log flush failed")

    # --- reading --------------------------------------------------------------------------
    async def stats(
        self, *, now: float | None = None, window: float = DAY_SECONDS, session_window: float
    ) -> RequestStats:
        """Figures over the last ``window`` seconds, from every worker's flushed rows."""
        await self.flush()
        now = now or time.time()
        since = now - window
        t = request_log.c
        async with self.db.read(_WORDS) as conn:
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


def _row(entry: RequestLogEntry) -> dict[str, Any]:
    return {
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
