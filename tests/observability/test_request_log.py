"""The request log lives in the database's one Alembic history, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from llm_api.chat.store import open_store
from llm_api.db.database import Database
from llm_api.db.engine import create_database_engine
from llm_api.db.migrate import alembic_config
from llm_api.observability.request_log import (
    RequestLog,
    RequestLogEntry,
    engine_health,
    request_log,
)
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine

OBS_TABLES = {"obs_request_log", "obs_engine_health"}


REVISION = "0004"  # migrations/versions/0004_request_log.py


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def before_revision() -> str:
    down = ScriptDirectory.from_config(alembic_config()).get_revision(REVISION).down_revision
    assert isinstance(down, str)
    return down


async def tables_and_version(url: str) -> tuple[set[str], str | None]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            version = None
            if "alembic_version" in tables:
                version = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one()
    finally:
        await engine.dispose()
    return tables, version


async def logged_rows(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(request_log))).scalar_one()
            )
    finally:
        await engine.dispose()


def entry(index: int, *, error: bool = False, session_id: str | None = None) -> RequestLogEntry:
    return RequestLogEntry(
        ts=time.time(),
        request_id=f"req-{index}",
        route="/v1/chat/completions",
        method="POST",
        status=500 if error else 200,
        latency=0.5,
        error=error,
        session_id=session_id,
        prompt_tokens=10,
        completion_tokens=5,
    )


async def test_the_store_migration_creates_the_request_log_tables(
    fresh_db_url: str, tmp_path: Path
) -> None:
    store = await open_store(fresh_db_url, tmp_path)
    await store.close()
    tables, version = await tables_and_version(fresh_db_url)
    assert tables >= {"sessions", "messages", "api_keys", *OBS_TABLES}
    assert version == head_revision()


async def test_request_log_migrates_its_database_and_writes_only_on_flush(
    fresh_db_url: str,
) -> None:
    db = Database.connect(fresh_db_url)
    log = RequestLog(db, flush_seconds=3600)
    await log.open()
    try:
        tables, version = await tables_and_version(fresh_db_url)
        assert tables >= {"sessions", *OBS_TABLES}  # one history: the whole chain ran
        assert version == head_revision()
        log.add(entry(1, session_id="chat_a"))
        log.add(entry(2, session_id="chat_a"))
        log.add(entry(3, error=True))
        log.add_health_sample(True)
        log.add_health_sample(False)
        assert await logged_rows(fresh_db_url) == 0  # add() never touches the database
        stats = await log.stats(session_window=60)
        assert await logged_rows(fresh_db_url) == 3
    finally:
        await log.close()
        await db.close()
    assert stats.total == 3
    assert stats.error_rate == 1 / 3
    assert stats.average_latency == 0.5
    assert stats.active_sessions == 1
    assert stats.uptime_percent == 50.0


async def test_two_workers_starting_together_share_one_log(fresh_db_url: str) -> None:
    # Two workers: two processes' databases, each with its own engine and writer lock.
    dbs = [Database.connect(fresh_db_url) for _ in range(2)]
    workers = [RequestLog(db, flush_seconds=0.05) for db in dbs]
    await asyncio.gather(*(w.open() for w in workers))  # concurrent migrations wait in turn
    try:
        for index in range(10):
            workers[index % 2].add(entry(index))
        await asyncio.sleep(0.3)  # each worker's own flusher writes its rows
        assert await logged_rows(fresh_db_url) == 10
        totals = [(await w.stats(session_window=60)).total for w in workers]
    finally:
        await asyncio.gather(*(w.close() for w in workers))
        await asyncio.gather(*(db.close() for db in dbs))
    assert totals == [10, 10]
    _, version = await tables_and_version(fresh_db_url)
    assert version == head_revision()


async def test_tables_made_before_the_migration_keep_their_rows(fresh_db_url: str) -> None:
    # The earlier gateway created these tables itself, outside the history.
    engine = create_database_engine(fresh_db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), before_revision()))
            await conn.run_sync(
                lambda c: request_log.metadata.create_all(c, tables=[request_log, engine_health])
            )
            await conn.execute(insert(request_log), [_row(entry(1))])
    finally:
        await engine.dispose()

    db = Database.connect(fresh_db_url)
    log = RequestLog(db)
    await log.open()
    try:
        assert (await log.stats(session_window=60)).total == 1
    finally:
        await log.close()
        await db.close()
    _, version = await tables_and_version(fresh_db_url)
    assert version == head_revision()


async def test_downgrade_drops_the_tables_and_upgrade_restores_them(fresh_db_url: str) -> None:
    store = await open_store(fresh_db_url, Path("unused"))
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), before_revision()))
        tables, version = await tables_and_version(fresh_db_url)
        assert not tables & OBS_TABLES
        assert version == before_revision()
        await store.migrate()
    finally:
        await store.close()
    tables, version = await tables_and_version(fresh_db_url)
    assert tables >= OBS_TABLES
    assert version == head_revision()


async def test_gateway_keeps_its_request_log_in_the_store_database(
    fresh_db_url: str, fake_engine: FakeEngine, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    if fresh_db_url.startswith("sqlite"):
        data_dir = Path(fresh_db_url.removeprefix("sqlite+aiosqlite:///")).parent
        settings = gateway_settings(fake_engine.url, data_dir=data_dir)
    else:
        settings = gateway_settings(fake_engine.url, data_dir=data_dir, database_url=fresh_db_url)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        for _ in range(3):
            assert (await http.get("/v1/models")).status_code == 200
    # Shutting down flushes every buffered row, into the one database.
    assert await logged_rows(fresh_db_url) == 3
    assert not (data_dir / "observability.sqlite3").exists()


def _row(e: RequestLogEntry) -> dict[str, object]:
    return {
        "ts": e.ts,
        "request_id": e.request_id,
        "route": e.route,
        "method": e.method,
        "status": e.status,
        "latency": e.latency,
        "error": e.error,
        "session_id": e.session_id,
        "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens,
    }
