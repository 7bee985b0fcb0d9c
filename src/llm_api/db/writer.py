"""Group commit for the SQLite store: the writes queued while one commits share the next.

SQLite has one writer at a time, so a burst of turns (64 clients starting at once, or 64
replies ending together) used to form a convoy: each write took the lock, hopped to the
driver's thread and back once per statement, paid its own ``fsync``, and only then let the
next one start, while the event loop it hopped back to was busy with the other requests.

Here one thread owns a connection of its own and commits *batches*: whatever writes are
waiting when the previous batch ends go into one ``BEGIN IMMEDIATE … COMMIT``, each inside
a savepoint, for one thread hand-off and one durable commit per batch. A write that fails
rolls back to its savepoint and fails alone; a commit that fails fails every write of the
batch (nothing of it is stored). No write is reported done before its batch has committed,
so durability is what ``synchronous=FULL`` gives a single commit.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
Configure = Callable[[sqlite3.Connection], None]


@dataclass(slots=True)
class _Pending(Generic[T]):
    job: Job[T]
    future: asyncio.Future[T]
    value: Any = None
    error: BaseException | None = None


class SqliteWriter:
    """Runs write jobs (functions of a ``sqlite3.Connection``) in committed batches.

    ``lock`` is the store's in-process writer lock: a batch holds it while it commits, so
    the store's other writes (through SQLAlchemy) never meet this connection in SQLite's
    busy handler. Writers in other processes still do, up to ``busy_timeout``.
    """

    def __init__(
        self, path: str, *, busy_timeout: float, lock: asyncio.Lock, configure: Configure
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._lock = lock
        self._configure = configure
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._connection: sqlite3.Connection | None = None
        self._pending: list[_Pending[Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # committed batches, for tests and benchmarks

    async def run(self, job: Job[T]) -> T:
        """Run ``job`` in the next batch; its value once the batch has committed.

        The job runs on the writer's thread inside a savepoint, so it must not commit. A
        caller cancelled before its batch starts has its job dropped; once the batch has
        started, the job's effects commit or roll back with the batch regardless.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(job, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.wait({self._flusher}, timeout=10)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=True)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            async with self._lock:
                batch = [p for p in self._pending if not p.future.done()]
                self._pending = []
                if not batch:
                    continue
                # Shielded: the thread runs the batch to its end whatever happens here, and
                # the callers' futures must learn how it ended.
                try:
                    await asyncio.shield(loop.run_in_executor(self._executor, self._commit, batch))
                except BaseException as exc:
                    for pending in batch:
                        if pending.future.done():
                            continue
                        if isinstance(exc, Exception):
                            pending.future.set_exception(exc)
                        else:
                            pending.future.cancel()
                    raise
            self.batches += 1
            for pending in batch:
                if pending.future.done():
                    continue
                if pending.error is not None:
                    pending.future.set_exception(pending.error)
                else:
                    pending.future.set_result(pending.value)

    # --- on the writer's thread -------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self._path, timeout=self._busy_timeout, isolation_level=None
            )
            self._configure(connection)
            self._connection = connection
        return self._connection

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _commit(self, batch: list[_Pending[Any]]) -> None:
        """One transaction for the batch; each job's value or error set on it."""
        remaining = batch
        while remaining:
            try:
                remaining = self._attempt(remaining)
            except sqlite3.Error as exc:  # BEGIN, a savepoint or COMMIT: the batch fails
                if self._connection is not None:
                    self._rollback(self._connection)
                _fail(remaining, exc)
                return

    def _attempt(self, jobs: list[_Pending[Any]]) -> list[_Pending[Any]]:
        """Run ``jobs`` in one transaction; the ones to run again in a fresh one.

        A failure that SQLite answers by rolling back the whole transaction (a full disk
        can) also undoes the jobs before it: those, and the ones not yet run, are returned
        to run again without the one that failed, so every attempt is shorter than the last.
        """
        connection = self._open()
        connection.execute("BEGIN IMMEDIATE")
        for index, pending in enumerate(jobs):
            connection.execute("SAVEPOINT job")
            try:
                pending.value = pending.job(connection)
            except Exception as exc:  # the job's own caller gets it
                pending.error = exc
                if not connection.in_transaction:
                    return jobs[:index] + jobs[index + 1 :]
                connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
        connection.execute("COMMIT")
        return []

    @staticmethod
    def _rollback(connection: sqlite3.Connection) -> None:
        if connection.in_transaction:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                return  # the connection is reset on its next BEGIN anyway


def _fail(jobs: list[_Pending[Any]], error: BaseException) -> None:
    for pending in jobs:
        pending.value = None
        pending.error = error


# --- statements for the writer's own connection -------------------------------------------
Processor = Callable[[Any], Any]
_GIVEN = object()  # a parameter the caller supplies, as opposed to a literal in the statement
Compiled = tuple[str, tuple[tuple[str, Processor | None, Any], ...]]


@functools.lru_cache(maxsize=64)
def compiled_statement(statement: ClauseElement, dialect: Dialect) -> Compiled:
    """The statement's SQL for a positional-parameter dialect, and its parameters in order,
    each with the conversion its SQLAlchemy type applies (dates become text on SQLite) and,
    for a literal of the statement itself (``status == 'streaming'``), its value."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    order = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        value = _GIVEN if bind.required else bind.effective_value
        order.append((name, bind.type.bind_processor(dialect), value))
    return compiled.string, tuple(order)


def positional_params(compiled: Compiled, values: dict[str, Any]) -> tuple[Any, ...]:
    out = []
    for name, convert, literal in compiled[1]:
        value = values[name] if literal is _GIVEN else literal
        out.append(value if convert is None else convert(value))
    return tuple(out)
