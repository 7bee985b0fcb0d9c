"""One database: its SQLAlchemy engine and the one write path every store uses.

SQLite has one writer at a time. This process's writers queue on one asyncio lock, in
order, rather than in SQLite's busy handler, which sleeps with a back-off of up to 100 ms a
try and so turns a burst of writes into a convoy (writers in other processes still meet the
busy timeout). The hot writes go through the group-committing :class:`SqliteWriter` under
the same lock; the rest through SQLAlchemy with ``BEGIN IMMEDIATE``. Every store of the
process that uses the same database (conversations, keys, the request log, …) shares one
:class:`Database`, and so one lock: none of them can meet another's transaction in the
busy handler.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from llm_api.db.engine import create_database_engine, sqlite_pragmas
from llm_api.db.errors import DEFAULT_WORDS, ErrorWords, translate_errors
from llm_api.db.writer import Job, SqliteWriter

T = TypeVar("T")

# Key for pg_advisory_xact_lock around migrations (any constant shared by all workers).
_MIGRATION_LOCK_KEY = 0x6C6C6D5F617069


class Database:
    def __init__(self, engine: AsyncEngine, *, busy_timeout: float = 5.0) -> None:
        self.engine = engine
        self._writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._batched: SqliteWriter | None = None
        if self._writer is not None:
            self._batched = SqliteWriter(
                str(engine.url.database),
                busy_timeout=busy_timeout,
                lock=self._writer,
                configure=functools.partial(sqlite_pragmas, busy_timeout=busy_timeout),
            )

    @classmethod
    def connect(cls, url: str, *, busy_timeout: float = 5.0) -> Database:
        return cls(
            create_database_engine(url, busy_timeout=busy_timeout), busy_timeout=busy_timeout
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def sqlite_writer(self) -> SqliteWriter | None:
        """The group-committing writer (SQLite only)."""
        return self._batched

    async def close(self) -> None:
        if self._batched is not None:
            await self._batched.close()
        await self.engine.dispose()

    async def batch(self, job: Job[T], words: ErrorWords = DEFAULT_WORDS) -> T:
        """Run ``job`` in the SQLite writer's next committed batch (SQLite only)."""
        if self._batched is None:
            raise RuntimeError("group commit exists on SQLite only; check Database.sqlite_writer")
        with translate_errors(words):
            return await self._batched.run(job)

    @asynccontextmanager
    async def _one_writer(self) -> AsyncIterator[None]:
        if self._writer is None:
            yield
            return
        async with self._writer:
            yield

    @asynccontextmanager
    async def write(self, words: ErrorWords = DEFAULT_WORDS) -> AsyncIterator[AsyncConnection]:
        """A write transaction: ``BEGIN IMMEDIATE`` on SQLite, behind this process's lock."""
        with translate_errors(words):
            async with self._one_writer(), self.engine.connect() as conn:
                await conn.execution_options(store_write=True)
                async with conn.begin():
                    yield conn

    @asynccontextmanager
    async def autocommit(self, words: ErrorWords = DEFAULT_WORDS) -> AsyncIterator[AsyncConnection]:
        """A connection on which each statement commits on its own, durably.

        For writes that are a single statement: no ``BEGIN``/``COMMIT`` round trips. On
        SQLite the driver already runs in autocommit mode and only the ``BEGIN`` of the
        begin hook is left out; a writing statement takes the write lock (waiting on the
        busy timeout) before it reads, as ``BEGIN IMMEDIATE`` would.
        """
        with translate_errors(words):
            async with self._one_writer(), self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    await conn.execution_options(store_autocommit=True)
                else:
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn

    @asynccontextmanager
    async def read(self, words: ErrorWords = DEFAULT_WORDS) -> AsyncIterator[AsyncConnection]:
        with translate_errors(words):
            async with self.engine.connect() as conn, conn.begin():
                yield conn

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; concurrent workers wait for each other
        (an advisory lock on PostgreSQL, the write lock on SQLite)."""
        from llm_api.db.migrate import upgrade  # noqa: PLC0415 - alembic loads only here

        async with self.write() as conn:
            if self.dialect == "postgresql":
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
            await conn.run_sync(upgrade)
