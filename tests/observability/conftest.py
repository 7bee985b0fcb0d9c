"""Request-log databases: a fresh SQLite file, or a fresh PostgreSQL database per test.

PostgreSQL (127.0.0.1:5432, trust auth) gets a database of its own for each test that asks
for one, created from the ``test`` database and dropped afterwards, so that migrations always
start from nothing and no test sees another's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from llm_api.db.engine import database_url
from tests.chat.conftest import pg_admin


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield database_url(None, tmp_path / "fresh")
        return
    name = f"llm_api_obs_{uuid.uuid4().hex[:12]}"
    try:
        await pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, DBAPIError) as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for the request-log tests: {exc!r}")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
