"""The conversation store on SQLite and PostgreSQL (the ``store`` fixture runs both)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from llm_api.chat.records import decode_cursor
from llm_api.chat.store import (
    COMPLETE,
    INTERRUPTED,
    STREAMING,
    LeaseRenewal,
    NewMessage,
    SessionStore,
    open_store,
    utcnow,
)
from llm_api.db.database import Database
from llm_api.db.engine import configure_sqlite, database_url
from llm_api.db.errors import is_unavailable
from llm_api.errors import Conflict, InvalidRequest, SessionNotFound, StoreUnavailable

HEBREW_Q = "מה מזג האוויר בתל אביב?"
HEBREW_A = "שמשי וחם, 28 מעלות."


async def _turn(store: SessionStore, owner: str, session_id: str, user: str, reply: str) -> None:
    history = await store.history(owner, session_id)
    last = history.messages[-1].seq if history else 0
    record = await store.append_turn(
        owner,
        session_id,
        language="hebrew",
        expected_last_seq=last,
        new_messages=[NewMessage("user", user)],
    )
    await store.finish_message(record.assistant_pk, reply, COMPLETE)


async def test_turn_is_stored_as_rows_in_order(store: SessionStore, owner: str) -> None:
    record = await store.append_turn(
        owner,
        "chat_store_0001",
        language="hebrew",
        expected_last_seq=0,
        new_messages=[NewMessage("user", HEBREW_Q, token_count=12)],
    )
    assert record.created_session
    placeholder = await store.history(owner, "chat_store_0001")
    assert placeholder is not None
    assert [(m.role, m.content, m.status) for m in placeholder.messages] == [
        ("user", HEBREW_Q, COMPLETE),
        ("assistant", "", STREAMING),
    ]
    assert placeholder.messages[0].token_count == 12
    await store.finish_message(record.assistant_pk, HEBREW_A, COMPLETE)
    history = await store.history(owner, "chat_store_0001")
    assert history is not None
    assert [(m.seq, m.role, m.content, m.status) for m in history.messages] == [
        (1, "user", HEBREW_Q, COMPLETE),
        (2, "assistant", HEBREW_A, COMPLETE),
    ]
    assert history.info.language == "hebrew"
    assert history.info.title is None
    assert history.messages[0].created_at.tzinfo is not None


async def test_every_query_is_scoped_by_owner(store: SessionStore, owner: str) -> None:
    other = owner + "-other"
    await _turn(store, owner, "chat_shared_id", "שלום", "היי")
    assert await store.history(other, "chat_shared_id") is None
    with pytest.raises(SessionNotFound):
        await store.get_session(other, "chat_shared_id")
    with pytest.raises(SessionNotFound):
        await store.rename(other, "chat_shared_id", "x")
    with pytest.raises(SessionNotFound):
        await store.delete(other, "chat_shared_id")
    assert (await store.list_sessions(other, limit=10, before=None)).sessions == []
    # The same id under another owner is another session.
    await _turn(store, other, "chat_shared_id", "hello", "hi")
    mine = await store.get_session(owner, "chat_shared_id")
    assert [m.content for m in mine.messages] == ["שלום", "היי"]


async def test_stale_expected_seq_is_a_conflict_and_writes_nothing(
    store: SessionStore, owner: str
) -> None:
    await _turn(store, owner, "chat_conflict_1", "one", "1")
    with pytest.raises(Conflict):
        await store.append_turn(
            owner,
            "chat_conflict_1",
            language="english",
            expected_last_seq=0,
            new_messages=[NewMessage("user", "two")],
        )
    history = await store.get_session(owner, "chat_conflict_1")
    assert [m.content for m in history.messages] == ["one", "1"]


async def test_concurrent_appends_one_wins_the_other_conflicts(
    store: SessionStore, owner: str
) -> None:
    await _turn(store, owner, "chat_race_0001", "start", "ok")

    async def append(text: str) -> str:
        try:
            await store.append_turn(
                owner,
                "chat_race_0001",
                language="english",
                expected_last_seq=2,
                new_messages=[NewMessage("user", text)],
            )
        except Conflict:
            return "conflict"
        return "ok"

    results = await asyncio.gather(append("a"), append("b"))
    assert sorted(results) == ["conflict", "ok"]
    history = await store.get_session(owner, "chat_race_0001")
    assert len(history.messages) == 4
    assert [m.seq for m in history.messages] == [1, 2, 3, 4]


async def test_new_session_created_twice_concurrently_conflicts(
    store: SessionStore, owner: str
) -> None:
    async def create() -> str:
        try:
            await store.append_turn(
                owner,
                "chat_new_race",
                language="english",
                expected_last_seq=0,
                new_messages=[NewMessage("user", "hi")],
            )
        except Conflict:
            return "conflict"
        return "ok"

    results = await asyncio.gather(create(), create())
    assert sorted(results) == ["conflict", "ok"]
    assert len((await store.get_session(owner, "chat_new_race")).messages) == 2


async def test_regenerate_reuses_the_unfinished_reply(store: SessionStore, owner: str) -> None:
    record = await store.append_turn(
        owner,
        "chat_regen_001",
        language="english",
        expected_last_seq=0,
        new_messages=[NewMessage("user", "q")],
    )
    await store.finish_message(record.assistant_pk, "partial", INTERRUPTED)
    again = await store.append_turn(
        owner,
        "chat_regen_001",
        language="english",
        expected_last_seq=2,
        new_messages=[],
        regenerate_pk=record.assistant_pk,
    )
    assert again.assistant_pk == record.assistant_pk
    history = await store.get_session(owner, "chat_regen_001")
    assert [(m.role, m.content, m.status) for m in history.messages] == [
        ("user", "q", COMPLETE),
        ("assistant", "", STREAMING),
    ]


async def test_recovery_marks_only_streaming_rows_past_their_lease(
    store: SessionStore, owner: str
) -> None:
    record = await store.append_turn(
        owner,
        "chat_crashed_01",
        language="hebrew",
        expected_last_seq=0,
        new_messages=[NewMessage("user", HEBREW_Q)],
        lease=timedelta(seconds=30),
    )
    await store.renew_leases([LeaseRenewal(record.assistant_pk, HEBREW_A[:5])], utcnow())
    # Renewed to "now": expired from here on. Another reply's lease still holds.
    live = await store.append_turn(
        owner,
        "chat_alive_0001",
        language="hebrew",
        expected_last_seq=0,
        new_messages=[NewMessage("user", HEBREW_Q)],
        lease=timedelta(seconds=30),
    )
    assert await store.recover_interrupted() >= 1
    crashed = await store.get_session(owner, "chat_crashed_01")
    assert [(m.status, m.content) for m in crashed.messages] == [
        (COMPLETE, HEBREW_Q),
        (INTERRUPTED, HEBREW_A[:5]),  # the text of the last renewal is kept
    ]
    alive = await store.get_session(owner, "chat_alive_0001")
    assert [m.status for m in alive.messages] == [COMPLETE, STREAMING]
    assert alive.messages[-1].is_live(utcnow())
    # Once the live reply's lease has run out too, it is recovered. (Counts are at least:
    # on PostgreSQL other tests' rows share the database.)
    assert await store.recover_interrupted(utcnow() + timedelta(seconds=31)) >= 1
    alive = await store.get_session(owner, "chat_alive_0001")
    assert alive.messages[-1].status == INTERRUPTED
    assert live.assistant_pk == alive.messages[-1].pk


async def test_renewal_writes_text_and_extends_the_lease_but_never_after_the_end(
    store: SessionStore, owner: str
) -> None:
    first = await store.append_turn(
        owner,
        "chat_renew_0001",
        language="hebrew",
        expected_last_seq=0,
        new_messages=[NewMessage("user", HEBREW_Q)],
        lease=timedelta(seconds=1),
    )
    other = await store.append_turn(
        owner,
        "chat_renew_0002",
        language="hebrew",
        expected_last_seq=0,
        new_messages=[NewMessage("user", HEBREW_Q)],
        lease=timedelta(seconds=1),
    )
    until = utcnow() + timedelta(minutes=5)
    await store.renew_leases(
        [LeaseRenewal(first.assistant_pk, "שמ"), LeaseRenewal(other.assistant_pk, "abc")], until
    )
    # One renewal with new text, one without (nothing new arrived): that one keeps its text.
    await store.renew_leases(
        [LeaseRenewal(first.assistant_pk, "שמשי"), LeaseRenewal(other.assistant_pk)], until
    )
    reply = (await store.get_session(owner, "chat_renew_0001")).messages[-1]
    assert (reply.content, reply.status) == ("שמשי", STREAMING)
    assert (await store.get_session(owner, "chat_renew_0002")).messages[-1].content == "abc"
    assert reply.lease_until is not None
    assert abs((reply.lease_until - until).total_seconds()) < 0.01
    await store.recover_interrupted(utcnow() + timedelta(seconds=2))  # 1 s leases: renewed
    assert (await store.get_session(owner, "chat_renew_0002")).messages[-1].status == STREAMING
    # The end is written; a renewal that comes late changes nothing.
    await store.finish_message(first.assistant_pk, HEBREW_A, COMPLETE)
    await store.renew_leases([LeaseRenewal(first.assistant_pk, "שמ")], until)
    reply = (await store.get_session(owner, "chat_renew_0001")).messages[-1]
    assert (reply.content, reply.status) == (HEBREW_A, COMPLETE)


async def test_pagination_newest_first_with_cursor(store: SessionStore, owner: str) -> None:
    ids = [f"chat_page_{i:04d}" for i in range(7)]
    for session_id in ids:
        await _turn(store, owner, session_id, "שאלה", "תשובה")
    await _turn(store, owner, ids[2], "עוד", "כן")  # the most recently active now
    expected = [ids[2], ids[6], ids[5], ids[4], ids[3], ids[1], ids[0]]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.list_sessions(owner, limit=3, before=cursor)
        pages += 1
        seen += [s.id for s in page.sessions]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3
    first = await store.list_sessions(owner, limit=1, before=None)
    assert first.sessions[0].message_count == 4
    with pytest.raises(InvalidRequest):
        decode_cursor("not-a-cursor")


async def test_exact_page_size_has_no_next_cursor(store: SessionStore, owner: str) -> None:
    for i in range(2):
        await _turn(store, owner, f"chat_exact_{i:04d}", "q", "a")
    page = await store.list_sessions(owner, limit=2, before=None)
    assert len(page.sessions) == 2
    assert page.next_cursor is None


async def test_rename_and_title_if_missing(store: SessionStore, owner: str) -> None:
    await _turn(store, owner, "chat_title_0001", "q", "a")
    assert await store.set_title_if_missing(owner, "chat_title_0001", "מזג אוויר")
    assert not await store.set_title_if_missing(owner, "chat_title_0001", "other")
    renamed = await store.rename(owner, "chat_title_0001", "שם חדש")
    assert renamed.info.title == "שם חדש"


async def test_delete_removes_session_and_messages(store: SessionStore, owner: str) -> None:
    await _turn(store, owner, "chat_delete_001", "q", "a")
    await store.delete(owner, "chat_delete_001")
    assert await store.history(owner, "chat_delete_001") is None
    with pytest.raises(SessionNotFound):
        await store.delete(owner, "chat_delete_001")
    # A new session may take the freed id.
    await _turn(store, owner, "chat_delete_001", "again", "b")
    assert len((await store.get_session(owner, "chat_delete_001")).messages) == 2


async def test_active_sessions_counts_recent_activity(store: SessionStore, owner: str) -> None:
    before = await store.active_session_count(utcnow() - timedelta(minutes=30))
    await _turn(store, owner, "chat_active_001", "q", "a")
    await _turn(store, owner, "chat_active_002", "q", "a")
    assert await store.active_session_count(utcnow() - timedelta(minutes=30)) == before + 2
    assert await store.active_session_count(utcnow() + timedelta(seconds=1)) == 0


async def test_migrations_are_idempotent(store: SessionStore, owner: str) -> None:
    await _turn(store, owner, "chat_migrate_01", "q", "a")
    await asyncio.gather(store.migrate(), store.migrate())
    assert len((await store.get_session(owner, "chat_migrate_01")).messages) == 2


async def test_full_sqlite_database_is_unavailable_and_nothing_half_written(
    tmp_path: Path, owner: str
) -> None:
    # One connection, so that a per-connection page limit governs every write.
    url = database_url(None, tmp_path / "full")
    engine = create_async_engine(url, poolclass=StaticPool)
    configure_sqlite(engine, busy_timeout=1.0)
    store = SessionStore(Database(engine, busy_timeout=1.0))
    try:
        await store.migrate()
        await _turn(store, owner, "chat_full_disk_1", "שלום", "היי")
        async with engine.connect() as conn:
            pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
        await _limit_pages(store, pages)
        with pytest.raises(StoreUnavailable):
            await store.append_turn(
                owner,
                "chat_full_disk_1",
                language="hebrew",
                expected_last_seq=2,
                new_messages=[NewMessage("user", "א" * 200_000)],
            )
        history = await store.get_session(owner, "chat_full_disk_1")
        assert [m.content for m in history.messages] == ["שלום", "היי"]
        await _limit_pages(store, 1073741823)
        await _turn(store, owner, "chat_full_disk_1", "עוד", "כן")
        assert len((await store.get_session(owner, "chat_full_disk_1")).messages) == 4
    finally:
        await store.close()


async def _limit_pages(store: SessionStore, pages: int) -> None:
    """A page limit on both of the store's connections: SQLAlchemy's and the batch writer's."""
    async with store.engine.connect() as conn:
        await conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
    writer = store.sqlite_writer
    assert writer is not None
    await writer.run(lambda c: c.execute(f"PRAGMA max_page_count = {pages}").close())


_BATCH_FRAMING = ("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT", "--")


async def _trace_batches(store: SessionStore, statements: list[str]) -> None:
    """From now on, every statement the store's batch writer runs lands in ``statements``."""
    writer = store.sqlite_writer
    assert writer is not None
    await writer.run(lambda c: c.set_trace_callback(statements.append))
    statements.clear()  # the tracing batch's own end


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [("53100", True), ("08006", True), ("57P01", True), ("40P01", True), ("42P01", False)],
)
def test_postgres_resource_and_connection_errors_are_unavailable(
    sqlstate: str, unavailable: bool
) -> None:
    error = DBAPIError("INSERT …", {}, _PgError(sqlstate))
    assert is_unavailable(error) is unavailable


async def test_continuing_turn_is_one_statement_that_touches_the_session(
    store: SessionStore, store_url: str, owner: str
) -> None:
    await _turn(store, owner, "chat_fast_00001", "first", "1")
    await _turn(store, owner, "chat_fast_00002", "other", "2")
    before = await store.get_session(owner, "chat_fast_00001")
    # Every statement the driver runs, seen by the database driver itself (on SQLite the
    # turn bypasses SQLAlchemy's cursor, so its events would not see it).
    statements: list[str] = []
    traced = SessionStore(Database.connect(store_url))

    @event.listens_for(traced.engine.sync_engine, "before_cursor_execute")
    def _trace_postgres(*args: Any) -> None:
        if traced.dialect == "postgresql":
            statements.append(args[2])

    try:
        if traced.dialect == "sqlite":  # the turn goes through the batch writer's connection
            await _trace_batches(traced, statements)
        record = await traced.append_turn(
            owner,
            "chat_fast_00001",
            language="hebrew",
            expected_last_seq=2,
            new_messages=[NewMessage("user", HEBREW_Q, token_count=9)],
            lease=timedelta(seconds=30),
        )
    finally:
        await traced.close()
    # Leave out the connection's set-up. (SQLite's trace reports the statement again as it
    # enters each trigger run and its RETURNING, so count distinct statements.)
    # On SQLite the batch's own BEGIN, savepoint and COMMIT frame it (shared by every write
    # of the batch).
    turn = {s.strip() for s in statements if not s.startswith(("PRAGMA", *_BATCH_FRAMING))}
    # No separate lock, read or touch: one statement, one round trip.
    assert len(turn) == 1
    assert turn.pop().split()[0] in {"INSERT", "WITH"}
    assert not record.created_session
    after = await store.get_session(owner, "chat_fast_00001")
    assert [(m.seq, m.role, m.content, m.status, m.token_count) for m in after.messages[2:]] == [
        (3, "user", HEBREW_Q, COMPLETE, 9),
        (4, "assistant", "", STREAMING, None),
    ]
    assert after.messages[-1].pk == record.assistant_pk
    assert after.messages[-1].is_live(utcnow())
    assert after.messages[2].lease_until is None
    assert after.info.updated_at > before.info.updated_at
    assert after.info.updated_at == after.messages[-1].created_at
    listed = await store.list_sessions(owner, limit=10, before=None)
    assert [s.id for s in listed.sessions] == ["chat_fast_00001", "chat_fast_00002"]
    assert listed.sessions[0].message_count == 4


async def test_continuing_turn_is_scoped_by_owner(store: SessionStore, owner: str) -> None:
    await _turn(store, owner, "chat_fast_owner1", "mine", "yes")
    with pytest.raises(Conflict):
        await store.append_turn(
            owner + "-other",
            "chat_fast_owner1",
            language="hebrew",
            expected_last_seq=2,
            new_messages=[NewMessage("user", "not yours")],
        )
    assert [m.content for m in (await store.get_session(owner, "chat_fast_owner1")).messages] == [
        "mine",
        "yes",
    ]


async def test_many_concurrent_continuing_turns_one_wins(store: SessionStore, owner: str) -> None:
    await _turn(store, owner, "chat_race_many1", "start", "ok")

    async def append(i: int) -> str:
        try:
            await store.append_turn(
                owner,
                "chat_race_many1",
                language="english",
                expected_last_seq=2,
                new_messages=[NewMessage("user", f"q{i}"), NewMessage("user", f"more{i}")],
            )
        except Conflict:
            return "conflict"
        return f"q{i}"

    results = await asyncio.gather(*(append(i) for i in range(6)))
    winners = [r for r in results if r != "conflict"]
    assert len(winners) == 1
    history = await store.get_session(owner, "chat_race_many1")
    # The winner's three rows, whole; nothing of the others.
    assert [(m.seq, m.content) for m in history.messages] == [
        (1, "start"),
        (2, "ok"),
        (3, winners[0]),
        (4, "more" + winners[0][1:]),
        (5, ""),
    ]


async def test_token_counts_are_cached_when_the_reply_ends(store: SessionStore, owner: str) -> None:
    await _turn(store, owner, "chat_counts_0001", "q1", "a1")
    await _turn(store, owner, "chat_counts_0002", "q2", "a2")
    first = await store.get_session(owner, "chat_counts_0001")
    other = await store.get_session(owner, "chat_counts_0002")
    record = await store.append_turn(
        owner,
        "chat_counts_0001",
        language="hebrew",
        expected_last_seq=2,
        new_messages=[NewMessage("user", "q3")],
    )
    counts = {first.messages[0].pk: 11, first.messages[1].pk: 12, other.messages[0].pk: 99}
    await store.finish_message(record.assistant_pk, "a3", COMPLETE, counts)
    history = await store.get_session(owner, "chat_counts_0001")
    assert [(m.content, m.token_count) for m in history.messages] == [
        ("q1", 11),
        ("a1", 12),
        ("q3", None),
        ("a3", None),
    ]
    # A key of another session is not this reply's to write.
    assert (await store.get_session(owner, "chat_counts_0002")).messages[0].token_count is None


async def test_concurrent_continuing_turns_on_different_sessions_all_succeed(
    store: SessionStore, owner: str
) -> None:
    ids = [f"chat_parallel_{i:04d}" for i in range(8)]
    for session_id in ids:
        await _turn(store, owner, session_id, "q", "a")
    # On SQLite the writers queue on the write lock (busy timeout), none fails.
    await asyncio.gather(*(_turn(store, owner, session_id, "q2", "a2") for session_id in ids))
    for session_id in ids:
        history = await store.get_session(owner, session_id)
        assert [(m.seq, m.content) for m in history.messages] == [
            (1, "q"),
            (2, "a"),
            (3, "q2"),
            (4, "a2"),
        ]


async def test_a_burst_of_sqlite_writers_queues_in_process_not_in_the_busy_handler(
    tmp_path: Path,
) -> None:
    """32 new conversations at once on a 20 ms busy timeout: every one is stored.

    Without the store's own writer queue, SQLite's busy handler makes the connections
    wait for each other and most of them give up (503) within the short timeout.
    """
    store = await open_store(database_url(None, tmp_path / "burst"), tmp_path, busy_timeout=0.02)
    try:
        results = await asyncio.gather(
            *(
                store.append_turn(
                    "burst-owner",
                    f"chat_burst_{i:04d}",
                    language="hebrew",
                    expected_last_seq=0,
                    new_messages=[NewMessage("user", f"{HEBREW_Q} {i}")],
                )
                for i in range(32)
            ),
            return_exceptions=True,
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        page = await store.list_sessions("burst-owner", limit=50, before=None)
        assert len(page.sessions) == 32
        # Group commit: the burst shares a few durable commits instead of 32 in a row.
        assert store.sqlite_writer is not None
        assert store.sqlite_writer.batches <= 2
    finally:
        await store.close()


async def test_new_conversation_on_sqlite_is_two_statements_in_a_batch(tmp_path: Path) -> None:
    store = await open_store(database_url(None, tmp_path / "new"), tmp_path)
    statements: list[str] = []
    try:
        await _trace_batches(store, statements)
        record = await store.append_turn(
            "new-owner",
            "chat_new_000001",
            language="hebrew",
            expected_last_seq=0,
            new_messages=[NewMessage("user", HEBREW_Q, token_count=9)],
        )
        stored = await store.get_session("new-owner", "chat_new_000001")
    finally:
        await store.close()
    assert record.created_session
    turn = [s.split()[0] for s in dict.fromkeys(s.strip() for s in statements) if s]
    # The batch's BEGIN IMMEDIATE and savepoint, the session, the turn's rows, COMMIT.
    assert turn == ["BEGIN", "SAVEPOINT", "INSERT", "INSERT", "RELEASE", "COMMIT"]
    assert [(m.seq, m.role, m.content, m.status) for m in stored.messages] == [
        (1, "user", HEBREW_Q, COMPLETE),
        (2, "assistant", "", STREAMING),
    ]
    assert stored.messages[-1].pk == record.assistant_pk
    assert stored.info.language == "hebrew"
    assert stored.info.updated_at == stored.messages[-1].created_at
