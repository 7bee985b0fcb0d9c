"""The conversation repository: sessions and their messages, every query scoped by owner.

SQLAlchemy Core on an async engine: SQLite (aiosqlite, the default: a file in the data
directory, WAL, ``synchronous=FULL``, a busy timeout) or PostgreSQL (asyncpg). Every query
is scoped by ``owner``. Write transactions on SQLite start with ``BEGIN IMMEDIATE`` so two
writers queue on the busy timeout instead of failing on a read-to-write upgrade.

The hot write, a new turn in an existing session, is one statement (see
:meth:`SessionStore.append_turn`): every statement and every ``BEGIN``/``COMMIT`` costs a
round trip to PostgreSQL or a hop to a driver thread, and those, not the durable commit
itself, were most of a turn's latency. On SQLite the hot writes (turns, replies' ends,
lease renewals, titles) are group-committed by :class:`~llm_api.db.writer.SqliteWriter`:
the writes that queue while one batch commits share the next, one thread hop and one
``fsync`` per batch, so a burst of clients no longer forms a convoy behind the write lock.

Database failures that a retry can cure (locked, full, unreachable) become
:class:`~llm_api.errors.StoreUnavailable` (503); a transaction that fails is rolled back
whole, so nothing is ever half-written.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Integer,
    String,
    Text,
    and_,
    bindparam,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter, TextClause

from llm_api.chat import search
from llm_api.chat.records import (
    LeaseRenewal,
    NewMessage,
    SessionHistory,
    SessionInfo,
    SessionPage,
    StoredMessage,
    TurnRecord,
    decode_cursor,
    encode_cursor,
)
from llm_api.chat.tables import (
    COMPLETE,
    DEFAULT_LEASE,
    DEFAULT_OWNER,
    ERROR,
    INTERRUPTED,
    STREAMING,
    messages,
    sessions,
)
from llm_api.db.database import Database
from llm_api.db.engine import SQLITE_FILE, database_url
from llm_api.db.errors import ErrorWords
from llm_api.db.types import UTCDateTime, utcnow
from llm_api.db.writer import Job, SqliteWriter, compiled_statement, positional_params
from llm_api.errors import Conflict, SessionNotFound

__all__ = [
    "COMPLETE",
    "DEFAULT_LEASE",
    "DEFAULT_OWNER",
    "ERROR",
    "INTERRUPTED",
    "SQLITE_FILE",
    "STREAMING",
    "LeaseRenewal",
    "NewMessage",
    "SessionHistory",
    "SessionInfo",
    "SessionPage",
    "SessionStore",
    "StoredMessage",
    "open_store",
    "utcnow",
]

T = TypeVar("T")

_WORDS = ErrorWords(
    unavailable="the conversation store is unavailable; retry shortly",
    conflict="another request changed this conversation at the same time; retry",
)


class SessionStore:
    """Sessions and their messages; every method takes the owner it acts for.

    Writes go through the process's one :class:`~llm_api.db.database.Database` write path:
    the hot ones (turns, replies' ends, leases, titles) through SQLite's group-committing
    writer, the rest (deletes, renames, the rare turn shapes) through SQLAlchemy, under the
    same lock.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.engine = db.engine
        self._batched = db.sqlite_writer
        if db.dialect == "sqlite" and not event.contains(
            db.engine.sync_engine, "connect", _register_search
        ):
            # The search's folding function, on every connection SQLAlchemy opens from now.
            event.listen(db.engine.sync_engine, "connect", _register_search)

    @property
    def sqlite_writer(self) -> SqliteWriter | None:
        """The group-committing writer (SQLite only)."""
        return self._batched

    @property
    def dialect(self) -> str:
        return self.db.dialect

    async def close(self) -> None:
        await self.db.close()

    async def _batch(self, job: Job[T]) -> T:
        return await self.db.batch(job, _WORDS)

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.db.write(_WORDS)

    def _autocommit(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.db.autocommit(_WORDS)

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.db.read(_WORDS)

    # --- start-up ---------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Bring the schema to the newest migration (see :meth:`Database.migrate`)."""
        await self.db.migrate()

    async def recover_interrupted(self, now: datetime | None = None) -> int:
        """Mark replies a dead worker left ``streaming`` as ``interrupted``; returns how many.

        Only rows whose lease has run out by ``now`` are touched: a reply that another,
        live worker is streaming renews its lease and is left alone. The text stored by the
        dead worker's last renewal stays.
        """
        async with self._write() as conn:
            result = await conn.execute(
                update(messages)
                .where(messages.c.status == STREAMING, _lease_expired(now or utcnow()))
                .values(status=INTERRUPTED, lease_until=None)
            )
        return int(result.rowcount or 0)

    async def renew_leases(self, renewals: Sequence[LeaseRenewal], until: datetime) -> None:
        """Extend streaming replies' leases to ``until`` and store their text so far, at once.

        One transaction for all of a worker's replies. A reply whose end was written
        meanwhile (no longer ``streaming``) is left as it is, so a late renewal can never
        overwrite a final text.
        """
        if not renewals:
            return
        rows = [{"b_pk": r.pk, "b_content": r.content, "b_until": until} for r in renewals]
        if self._batched is not None:
            compiled = compiled_statement(_RENEW_LEASE, self.engine.dialect)
            params = [positional_params(compiled, row) for row in rows]
            await self._batch(lambda c: c.executemany(compiled[0], params).close())
            return
        async with self._write() as conn:
            await conn.execute(_RENEW_LEASE, rows)

    # --- turns ------------------------------------------------------------------------------
    async def history(self, owner: str, session_id: str) -> SessionHistory | None:
        """The session and its messages in order, in one round trip; None if unknown."""
        query = (
            select(
                sessions.c.id,
                sessions.c.title,
                sessions.c.language,
                sessions.c.created_at.label("session_created_at"),
                sessions.c.updated_at,
                messages.c.pk,
                messages.c.seq,
                messages.c.role,
                messages.c.content,
                messages.c.status,
                messages.c.created_at,
                messages.c.token_count,
                messages.c.lease_until,
            )
            .select_from(sessions.outerjoin(messages, messages.c.session_pk == sessions.c.pk))
            .where(sessions.c.owner == owner, sessions.c.id == session_id)
            .order_by(messages.c.seq)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        head = rows[0]
        found = [_message(r) for r in rows if r.pk is not None]
        info = SessionInfo(
            head.id,
            head.title,
            head.language,
            head.session_created_at,
            head.updated_at,
            len(found),
        )
        return SessionHistory(info, found)

    async def append_turn(
        self,
        owner: str,
        session_id: str,
        *,
        language: str,
        expected_last_seq: int,
        new_messages: Sequence[NewMessage],
        regenerate_pk: int | None = None,
        abandoned_streaming: bool = False,
        lease: timedelta = DEFAULT_LEASE,
    ) -> TurnRecord:
        """Store the turn's new messages and a ``streaming`` assistant placeholder, at once.

        ``expected_last_seq`` is the last ``seq`` the caller read; if another request has
        written since, nothing is written and :class:`Conflict` is raised.
        ``regenerate_pk`` reuses an unfinished assistant reply as the placeholder;
        ``abandoned_streaming`` marks replies left ``streaming`` whose lease has run out (a
        dead worker's) interrupted. The placeholder's lease runs for ``lease``.

        The common turn (an existing session, new messages only) is one statement, committed
        on its own; anything else, or a fast attempt that wrote nothing (the session is gone
        or has moved on), takes a transaction of several statements, which tells those cases
        apart.
        """
        now = utcnow()
        plain = regenerate_pk is None and not abandoned_streaming
        if expected_last_seq == 0 and plain and self.dialect == "sqlite":
            placeholder = await self._create_with_turn_sqlite(
                owner,
                session_id,
                language=language,
                new_messages=new_messages,
                now=now,
                lease_until=now + lease,
            )
            if placeholder is not None:
                return TurnRecord(placeholder, created_session=True)
        if expected_last_seq > 0 and plain:
            placeholder = await self._append_to_existing(
                owner,
                session_id,
                expected_last_seq=expected_last_seq,
                new_messages=new_messages,
                now=now,
                lease_until=now + lease,
            )
            if placeholder is not None:
                return TurnRecord(placeholder, created_session=False)
        return await self._append_in_transaction(
            owner,
            session_id,
            language=language,
            expected_last_seq=expected_last_seq,
            new_messages=new_messages,
            regenerate_pk=regenerate_pk,
            abandoned_streaming=abandoned_streaming,
            now=now,
            lease_until=now + lease,
        )

    async def _append_in_transaction(
        self,
        owner: str,
        session_id: str,
        *,
        language: str,
        expected_last_seq: int,
        new_messages: Sequence[NewMessage],
        regenerate_pk: int | None,
        abandoned_streaming: bool,
        now: datetime,
        lease_until: datetime,
    ) -> TurnRecord:
        """Any turn, in one transaction: lock-and-read the session, then write."""
        last_seq_of_session = (
            select(func.coalesce(func.max(messages.c.seq), 0))
            .where(messages.c.session_pk == sessions.c.pk)
            .scalar_subquery()
        )
        async with self._write() as conn:
            query = select(sessions.c.pk, last_seq_of_session).where(
                sessions.c.owner == owner, sessions.c.id == session_id
            )
            if self.dialect == "postgresql":
                query = query.with_for_update(of=sessions)
            found = (await conn.execute(query)).one_or_none()
            created = found is None
            if found is not None:
                session_pk, last_seq = int(found[0]), int(found[1])
            else:
                if expected_last_seq != 0:
                    raise Conflict("this conversation was deleted meanwhile", param="session_id")
                last_seq = 0
                session_pk = (
                    await conn.execute(
                        insert(sessions)
                        .values(
                            id=session_id,
                            owner=owner,
                            title=None,
                            language=language,
                            created_at=now,
                            updated_at=now,
                        )
                        .returning(sessions.c.pk)
                    )
                ).scalar_one()
            if last_seq != expected_last_seq:
                raise Conflict(
                    "another request is adding to this conversation; wait for it to finish",
                    param="session_id",
                )
            if abandoned_streaming:
                await conn.execute(
                    update(messages)
                    .where(
                        messages.c.session_pk == session_pk,
                        messages.c.status == STREAMING,
                        _lease_expired(now),
                    )
                    .values(status=INTERRUPTED, lease_until=None)
                )
            rows: list[dict[str, Any]] = [
                {
                    "session_pk": session_pk,
                    "seq": last_seq + offset,
                    "role": message.role,
                    "content": message.content,
                    "status": COMPLETE,
                    "created_at": now,
                    "token_count": message.token_count,
                    "lease_until": None,
                }
                for offset, message in enumerate(new_messages, start=1)
            ]
            if regenerate_pk is not None:
                if rows:
                    await conn.execute(insert(messages), rows)
                result = await conn.execute(
                    update(messages)
                    .where(messages.c.pk == regenerate_pk, messages.c.session_pk == session_pk)
                    .values(
                        status=STREAMING,
                        content="",
                        created_at=now,
                        token_count=None,
                        lease_until=lease_until,
                    )
                )
                if result.rowcount != 1:
                    raise Conflict("the reply to retry is gone", param="session_id")
                assistant_pk = regenerate_pk
            else:
                rows.append(
                    {
                        "session_pk": session_pk,
                        "seq": last_seq + len(rows) + 1,
                        "role": "assistant",
                        "content": "",
                        "status": STREAMING,
                        "created_at": now,
                        "token_count": None,
                        "lease_until": lease_until,
                    }
                )
                # One statement for all of the turn's rows; the placeholder's key comes last.
                inserted = await conn.execute(
                    insert(messages).returning(messages.c.pk, sort_by_parameter_order=True), rows
                )
                assistant_pk = int(inserted.scalars().all()[-1])
            if not created:
                await conn.execute(
                    update(sessions).where(sessions.c.pk == session_pk).values(updated_at=now)
                )
        return TurnRecord(int(assistant_pk), created)

    async def _append_to_existing(
        self,
        owner: str,
        session_id: str,
        *,
        expected_last_seq: int,
        new_messages: Sequence[NewMessage],
        now: datetime,
        lease_until: datetime,
    ) -> int | None:
        """The turn's rows in one self-committing statement; the placeholder's key, or None.

        The statement writes only if the session exists and its last ``seq`` is still
        ``expected_last_seq``. Two requests racing past that check on PostgreSQL both try
        to insert the same ``seq``: the unique constraint fails the later statement whole
        (:class:`Conflict`). On SQLite the statement holds the write lock throughout.
        """
        values = _turn_values(
            owner,
            session_id,
            expected_last_seq=expected_last_seq,
            new_messages=new_messages,
            now=now,
            lease_until=lease_until,
        )
        statement = _append_statement(self.dialect, len(new_messages) + 1)
        if self.dialect == "sqlite":
            written = await self._sqlite_rows(statement, values)
        else:
            async with self._autocommit() as conn:
                written = [tuple(row) for row in (await conn.execute(statement, values)).all()]
        if not written:
            return None
        pk, _seq = max(written, key=lambda row: int(row[1]))
        return int(pk)

    async def _create_with_turn_sqlite(
        self,
        owner: str,
        session_id: str,
        *,
        language: str,
        new_messages: Sequence[NewMessage],
        now: datetime,
        lease_until: datetime,
    ) -> int | None:
        """A new conversation and its first turn: two statements in the next batch commit.

        The session row (``ON CONFLICT DO NOTHING``), then the turn's rows (the statement
        of :meth:`_append_to_existing`). None, with nothing written, when the session
        exists already; the general transaction then tells the cases apart.
        """
        values = _turn_values(
            owner,
            session_id,
            expected_last_seq=0,
            new_messages=new_messages,
            now=now,
            lease_until=lease_until,
        )
        values["language"] = language
        created = compiled_statement(_CREATE_SESSION, self.engine.dialect)
        append = compiled_statement(
            _append_statement("sqlite", len(new_messages) + 1), self.engine.dialect
        )
        session_params, turn_params = (
            positional_params(created, values),
            positional_params(append, values),
        )

        def job(connection: sqlite3.Connection) -> list[Any] | None:
            if not connection.execute(created[0], session_params).fetchall():
                return None
            return connection.execute(append[0], turn_params).fetchall()

        rows = await self._batch(job)
        if rows is None:
            return None
        pk, _seq = max(rows, key=lambda row: int(row[1]))
        return int(pk)

    async def _sqlite_rows(
        self, statement: TextClause, values: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run one statement in the next batch commit; its rows.

        SQLAlchemy still compiles the statement and formats its values (so dates are stored
        exactly as everywhere else); :func:`_guard` maps sqlite3's errors.
        """
        compiled = compiled_statement(statement, self.engine.dialect)
        sql, params = compiled[0], positional_params(compiled, values)
        rows = await self._batch(lambda c: c.execute(sql, params).fetchall())
        return [tuple(row) for row in rows]

    async def finish_message(
        self, pk: int, content: str, status: str, token_counts: dict[int, int] | None = None
    ) -> None:
        """Write a reply's final text and status (called by the stream's own finalizer).

        ``token_counts`` caches the engine's counts of the session's earlier messages that
        the turn had to count (a cache only: it is written here, off the turn's first write).
        """
        end = {"b_pk": pk, "b_content": content, "b_status": status}
        counts = [
            {"b_pk": key, "b_count": count, "b_reply": pk}
            for key, count in (token_counts or {}).items()
        ]
        if self._batched is not None:
            finish = compiled_statement(_FINISH, self.engine.dialect)
            cache = compiled_statement(_CACHE_TOKEN_COUNTS, self.engine.dialect)
            finish_params = positional_params(finish, end)
            count_params = [positional_params(cache, row) for row in counts]

            def job(connection: sqlite3.Connection) -> None:
                connection.execute(finish[0], finish_params)
                if count_params:
                    connection.executemany(cache[0], count_params)

            await self._batch(job)
            return
        if not counts:  # the usual case: one statement, committed on its own
            async with self._autocommit() as conn:
                await conn.execute(_FINISH, end)
            return
        async with self._write() as conn:
            await conn.execute(_FINISH, end)
            await conn.execute(_CACHE_TOKEN_COUNTS, counts)

    async def set_title_if_missing(self, owner: str, session_id: str, title: str) -> bool:
        values = {"b_owner": owner, "b_session_id": session_id, "b_title": title}
        if self._batched is not None:
            compiled = compiled_statement(_SET_TITLE, self.engine.dialect)
            params = positional_params(compiled, values)
            changed = await self._batch(lambda c: c.execute(compiled[0], params).rowcount)
            return bool(changed)
        async with self._write() as conn:
            result = await conn.execute(_SET_TITLE, values)
        return bool(result.rowcount)

    # --- browsing ---------------------------------------------------------------------------
    async def list_sessions(
        self, owner: str, *, limit: int, before: str | None, q: str | None = None
    ) -> SessionPage:
        count = (
            select(func.count())
            .select_from(messages)
            .where(messages.c.session_pk == sessions.c.pk)
            .scalar_subquery()
        )
        query = (
            select(sessions, count.label("message_count"))
            .where(sessions.c.owner == owner)
            .order_by(sessions.c.updated_at.desc(), sessions.c.pk.desc())
            .limit(limit + 1)
        )
        if q is not None and q.strip():
            pattern = search.like_pattern(q.strip())
            in_messages = (
                select(messages.c.pk)
                .where(messages.c.session_pk == sessions.c.pk)
                .where(search.folded(messages.c.content).like(pattern, escape="\\"))
                .exists()
            )
            query = query.where(
                or_(search.folded(sessions.c.title).like(pattern, escape="\\"), in_messages)
            )
        if before is not None:
            when, pk = decode_cursor(before)
            query = query.where(
                or_(
                    sessions.c.updated_at < when,
                    and_(sessions.c.updated_at == when, sessions.c.pk < pk),
                )
            )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        page = rows[:limit]
        found = [
            SessionInfo(r.id, r.title, r.language, r.created_at, r.updated_at, r.message_count)
            for r in page
        ]
        more = len(rows) > limit
        cursor = encode_cursor(page[-1].updated_at, page[-1].pk) if more and page else None
        return SessionPage(found, cursor)

    async def get_session(self, owner: str, session_id: str) -> SessionHistory:
        found = await self.history(owner, session_id)
        if found is None:
            raise SessionNotFound("no such session", param="session_id")
        return found

    async def rename(self, owner: str, session_id: str, title: str) -> SessionHistory:
        async with self._write() as conn:
            result = await conn.execute(
                update(sessions)
                .where(sessions.c.owner == owner, sessions.c.id == session_id)
                .values(title=title)
            )
        if not result.rowcount:
            raise SessionNotFound("no such session", param="session_id")
        return await self.get_session(owner, session_id)

    async def delete(self, owner: str, session_id: str) -> None:
        async with self._write() as conn:
            session_pk = (
                await conn.execute(
                    select(sessions.c.pk).where(
                        sessions.c.owner == owner, sessions.c.id == session_id
                    )
                )
            ).scalar_one_or_none()
            if session_pk is None:
                raise SessionNotFound("no such session", param="session_id")
            await conn.execute(delete(messages).where(messages.c.session_pk == session_pk))
            await conn.execute(delete(sessions).where(sessions.c.pk == session_pk))

    async def active_session_count(self, since: datetime) -> int:
        """Sessions (of every owner) with a message written since ``since``."""
        async with self._read() as conn:
            value = (
                await conn.execute(
                    select(func.count()).select_from(sessions).where(sessions.c.updated_at >= since)
                )
            ).scalar_one()
        return int(value)


@functools.lru_cache(maxsize=64)
def _append_statement(dialect: str, count: int) -> TextClause:
    """The turn's ``count`` rows (the placeholder last) as one statement, for ``dialect``.

    Written as SQL text because it uses what the Core builders do not cover in both
    dialects alike: a data-modifying CTE on PostgreSQL (the ``UPDATE`` that touches the
    session also row-locks it), an ``INSERT … SELECT`` from ``VALUES`` on SQLite, where the
    session's ``updated_at`` is touched by the trigger of migration 0005 instead.
    """
    rows = ", ".join(
        f"(:n{i}, :role{i}, :content{i}, :status{i}, :tokens{i}, :lease{i})" for i in range(count)
    )
    columns = "session_pk, seq, role, content, status, created_at, token_count, lease_until"
    last_seq = "SELECT coalesce(max(m.seq), 0) FROM messages AS m WHERE m.session_pk = {}"
    if dialect == "postgresql":
        sql = f"""
            WITH touched AS (
                UPDATE sessions SET updated_at = :now
                WHERE owner = :owner AND id = :session_id
                  AND ({last_seq.format("sessions.pk")}) = :expected
                RETURNING pk
            )
            INSERT INTO messages ({columns})
            SELECT touched.pk, :expected + v.n, v.role, v.content, v.status, :now, v.tokens,
                   v.lease
            FROM touched, (VALUES {rows}) AS v (n, role, content, status, tokens, lease)
            RETURNING pk, seq
        """  # noqa: S608 - only placeholders and constant names are interpolated
    else:
        sql = f"""
            INSERT INTO messages ({columns})
            SELECT s.pk, :expected + v.column1, v.column2, v.column3, v.column4, :now,
                   v.column5, v.column6
            FROM sessions AS s, (VALUES {rows}) AS v
            WHERE s.owner = :owner AND s.id = :session_id
              AND ({last_seq.format("s.pk")}) = :expected
            RETURNING pk, seq
        """  # noqa: S608 - only placeholders and constant names are interpolated
    typed: list[BindParameter[Any]] = [
        bindparam("owner", type_=String()),
        bindparam("session_id", type_=String()),
        bindparam("expected", type_=Integer()),
        bindparam("now", type_=UTCDateTime()),
    ]
    for i in range(count):
        typed += [
            bindparam(f"n{i}", type_=Integer()),
            bindparam(f"role{i}", type_=String()),
            bindparam(f"content{i}", type_=Text()),
            bindparam(f"status{i}", type_=String()),
            bindparam(f"tokens{i}", type_=Integer()),
            bindparam(f"lease{i}", type_=UTCDateTime()),
        ]
    return text(sql).bindparams(*typed)


def _turn_values(
    owner: str,
    session_id: str,
    *,
    expected_last_seq: int,
    new_messages: Sequence[NewMessage],
    now: datetime,
    lease_until: datetime,
) -> dict[str, Any]:
    """Parameters of :func:`_append_statement`: the new messages, then the placeholder."""
    rows = [*new_messages, NewMessage("assistant", "")]
    values: dict[str, Any] = {
        "owner": owner,
        "session_id": session_id,
        "expected": expected_last_seq,
        "now": now,
    }
    for i, message in enumerate(rows):
        placeholder = i == len(rows) - 1
        values |= {
            f"n{i}": i + 1,
            f"role{i}": message.role,
            f"content{i}": message.content,
            f"status{i}": STREAMING if placeholder else COMPLETE,
            f"tokens{i}": message.token_count,
            f"lease{i}": lease_until if placeholder else None,
        }
    return values


_CREATE_SESSION = text(
    "INSERT INTO sessions (id, owner, title, language, created_at, updated_at) "
    "VALUES (:session_id, :owner, NULL, :language, :now, :now) "
    "ON CONFLICT DO NOTHING RETURNING pk"
).bindparams(
    bindparam("session_id", type_=String()),
    bindparam("owner", type_=String()),
    bindparam("language", type_=String()),
    bindparam("now", type_=UTCDateTime()),
)


def _lease_expired(now: datetime) -> Any:
    # Rows from before leases existed have none: their worker cannot vouch for them either.
    return or_(messages.c.lease_until.is_(None), messages.c.lease_until <= now)


_RENEW_LEASE = (
    update(messages)
    .where(messages.c.pk == bindparam("b_pk"), messages.c.status == STREAMING)
    .values(
        lease_until=bindparam("b_until"),
        content=func.coalesce(bindparam("b_content", type_=Text()), messages.c.content),
    )
)


_FINISH = (
    update(messages)
    .where(messages.c.pk == bindparam("b_pk"))
    .values(content=bindparam("b_content"), status=bindparam("b_status"), lease_until=None)
)
_reply = messages.alias("reply")
_CACHE_TOKEN_COUNTS = (
    update(messages)
    .where(
        messages.c.pk == bindparam("b_pk"),
        messages.c.session_pk
        == select(_reply.c.session_pk).where(_reply.c.pk == bindparam("b_reply")).scalar_subquery(),
    )
    .values(token_count=bindparam("b_count"))
)
_SET_TITLE = (
    update(sessions)
    .where(
        sessions.c.owner == bindparam("b_owner"),
        sessions.c.id == bindparam("b_session_id"),
        sessions.c.title.is_(None),
    )
    .values(title=bindparam("b_title"))
)


def _register_search(dbapi_connection: Any, _record: Any) -> None:
    search.register_sqlite(dbapi_connection)


def _message(row: Any) -> StoredMessage:
    return StoredMessage(
        pk=row.pk,
        seq=row.seq,
        role=row.role,
        content=row.content,
        status=row.status,
        created_at=row.created_at,
        token_count=row.token_count,
        lease_until=row.lease_until,
    )


async def open_store(url: str | None, data_dir: Path, *, busy_timeout: float = 5.0) -> SessionStore:
    """Connect, migrate, and mark replies a crash left ``streaming`` as ``interrupted``.

    With several workers each one runs this at start-up; migrations are serialized (an
    advisory lock on PostgreSQL, the write lock on SQLite), and recovery is idempotent and
    touches only replies whose lease has run out: another worker's live stream is left alone
    (the chat service's sweep catches a dead worker's replies whose lease runs out later).
    """
    db = Database.connect(database_url(url, data_dir), busy_timeout=busy_timeout)
    store = SessionStore(db)
    try:
        await store.migrate()
        await store.recover_interrupted()
    except BaseException:
        await store.close()
        raise
    return store
