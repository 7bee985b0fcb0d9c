"""Conversation-store fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL (127.0.0.1:5432, trust auth) gets a database of its own for the test run,
created from the ``test`` database and dropped at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from llm_api.chat.store import SessionStore, open_store
from llm_api.db.engine import database_url

PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def pg_admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"llm_api_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, DBAPIError) as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for the store tests: {exc!r}")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> str:
    if request.param == "sqlite":
        return database_url(None, tmp_path / "store")
    return postgres_url


@pytest.fixture
async def store(store_url: str, tmp_path: Path) -> AsyncIterator[SessionStore]:
    opened = await open_store(store_url, tmp_path, busy_timeout=2.0)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def owner() -> str:
    """A fresh owner per test: tests share the PostgreSQL database, never each other's rows."""
    return f"owner-{uuid.uuid4().hex}"
