"""The group-committing SQLite writer: batches, failures that stay alone, lost transactions."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from llm_api.db.engine import sqlite_pragmas
from llm_api.db.writer import SqliteWriter


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "writer.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return path


@pytest.fixture
async def writer(db: Path) -> AsyncIterator[SqliteWriter]:
    opened = SqliteWriter(
        str(db),
        busy_timeout=0.05,
        lock=asyncio.Lock(),
        configure=lambda c: sqlite_pragmas(c, busy_timeout=0.05),
    )
    try:
        yield opened
    finally:
        await opened.close()


def rows(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as connection:
        return list(connection.execute("SELECT k, v FROM t ORDER BY k"))


def insert(k: int, v: str = "שלום") -> Callable[[sqlite3.Connection], int]:
    def job(connection: sqlite3.Connection) -> int:
        inserted = connection.execute("INSERT INTO t VALUES (?, ?) RETURNING k", (k, v))
        return int(inserted.fetchone()[0])

    return job


async def test_a_burst_commits_in_one_batch(writer: SqliteWriter, db: Path) -> None:
    results = await asyncio.gather(*(writer.run(insert(k)) for k in range(50)))
    assert results == list(range(50))
    assert writer.batches == 1
    assert len(rows(db)) == 50


async def test_a_failing_write_fails_alone_and_leaves_nothing(
    writer: SqliteWriter, db: Path
) -> None:
    def half_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t VALUES (100, 'half')")
        connection.execute("INSERT INTO t VALUES (1, 'duplicate key')")  # fails

    results = await asyncio.gather(
        writer.run(insert(1)),
        writer.run(half_then_fail),
        writer.run(insert(2)),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert results[2] == 2
    assert writer.batches == 1
    assert rows(db) == [(1, "שלום"), (2, "שלום")]  # nothing of the failed write


async def test_a_lost_transaction_runs_the_others_again(writer: SqliteWriter, db: Path) -> None:
    """A failure after which SQLite has rolled back the whole transaction (as a full disk
    can) undoes the writes before it too: they run again, and only the failed one fails."""
    runs: list[int] = []

    def counted(k: int) -> Callable[[sqlite3.Connection], int]:
        def job(connection: sqlite3.Connection) -> int:
            runs.append(k)
            connection.execute("INSERT INTO t VALUES (?, 'x')", (k,))
            return k

        return job

    def loses_the_transaction(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t VALUES (50, 'lost')")
        connection.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    results = await asyncio.gather(
        writer.run(counted(1)),
        writer.run(loses_the_transaction),
        writer.run(counted(2)),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], sqlite3.OperationalError)
    assert results[2] == 2
    assert runs == [1, 1, 2]  # the first ran again; the third ran once, after the loss
    assert [k for k, _ in rows(db)] == [1, 2]


async def test_a_locked_database_fails_the_batch_then_recovers(
    writer: SqliteWriter, db: Path
) -> None:
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        results = await asyncio.gather(
            writer.run(insert(1)),
            writer.run(insert(2)),
            return_exceptions=True,
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert await writer.run(insert(3)) == 3
    assert rows(db) == [(3, "שלום")]


async def test_a_caller_cancelled_before_its_batch_writes_nothing(db: Path) -> None:
    lock = asyncio.Lock()
    writer = SqliteWriter(
        str(db), busy_timeout=1.0, lock=lock, configure=lambda c: sqlite_pragmas(c, 1.0)
    )
    try:
        async with lock:  # another write holds the store's lock: the batch cannot start
            cancelled = asyncio.create_task(writer.run(insert(1)))
            await asyncio.sleep(0.01)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        assert await writer.run(insert(2)) == 2
    finally:
        await writer.close()
    assert rows(db) == [(2, "שלום")]
