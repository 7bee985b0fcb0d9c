"""The migrations build exactly the tables the code defines, on SQLite and PostgreSQL.

Alembic's autogenerate compares a database with the metadata env.py hands it: a table the
code defines but no migration creates (or the reverse) would be offered as a change, and
before the shared MetaData it offered to drop ``api_keys`` and the request-log tables.
"""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from llm_api.db.database import Database
from llm_api.db.migrate import alembic_config
from llm_api.schema import metadata


async def _migrated(url: str) -> Database:
    db = Database.connect(url)
    await db.migrate()
    return db


async def test_migrations_on_an_empty_database_match_the_metadata(fresh_db_url: str) -> None:
    db = await _migrated(fresh_db_url)
    try:
        async with db.engine.connect() as conn:

            def diff(sync: Connection) -> list[Any]:
                context = MigrationContext.configure(sync, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            differences = await conn.run_sync(diff)
    finally:
        await db.close()
    assert differences == []
    assert {"sessions", "messages", "api_keys", "obs_request_log", "obs_engine_health"} <= set(
        metadata.tables
    )


async def test_alembic_check_finds_nothing_to_generate(fresh_db_url: str) -> None:
    # Through the shipped env.py, with the metadata it really targets (`alembic check`).
    db = await _migrated(fresh_db_url)
    try:
        async with db.engine.connect() as conn:
            await conn.run_sync(lambda sync: command.check(alembic_config(sync)))
    finally:
        await db.close()


def test_no_migration_imports_application_code() -> None:
    # A migration's meaning must not change when app code does: each defines what it uses.
    from pathlib import Path

    from llm_api.migrations import versions

    folder = Path(versions.__file__).parent
    offenders = [
        path.name
        for path in sorted(folder.glob("*.py"))
        if "from llm_api" in path.read_text() or "import llm_api" in path.read_text()
    ]
    assert offenders == []
