"""Streaming replies' leases: text written while streaming, several workers on one store.

Each test runs on SQLite and on PostgreSQL. Gateways here flush every 0.3 s, so a lease
lasts 1.5 s: a reply streamed for seconds outlives several leases and must keep renewing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import event

from llm_api.chat.leases import ReplyLeases
from llm_api.chat.store import (
    STREAMING,
    NewMessage,
    SessionStore,
    open_store,
)
from llm_api.settings import Settings
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine
from tests.sse import stream_events

FLUSH = 0.3
HEBREW = "ספר לי על הכנרת"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, postgres_url: str) -> dict[str, Any]:
    return {"database_url": postgres_url} if request.param == "postgresql" else {}


def settings_for(fake_engine: FakeEngine, database: dict[str, Any]) -> Settings:
    return gateway_settings(fake_engine.url, chat_flush_seconds=FLUSH, **database)


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


def session_id(name: str) -> str:
    # The PostgreSQL database is shared by the test run: ids must not repeat.
    return f"chat_{name}_{uuid.uuid4().hex[:8]}"


async def last_reply(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await client.get(f"/api/sessions/{sid}")
    assert response.status_code == 200
    reply: dict[str, Any] = response.json()["messages"][-1]
    return reply


async def stream_until_done(
    client: httpx.AsyncClient, sid: str, seen: list[str]
) -> list[dict[str, Any]]:
    events = []
    async with client.stream(
        "POST",
        "/api/chat/stream",
        json={"messages": [{"role": "user", "content": HEBREW}], "session_id": sid},
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                events.append(orjson.loads(line[5:]))
                if events[-1]["type"] == "content":
                    seen.append(events[-1]["content"])
    return events


async def test_reply_text_is_written_while_it_streams(
    fake_engine: FakeEngine, database: dict[str, Any]
) -> None:
    state = fake_engine.state
    state.chunks = [f"גל{i} " for i in range(60)]
    state.chunk_delay = 0.05
    full = "".join(state.chunks)
    sid = session_id("flushing")
    async with gateway(settings_for(fake_engine, database)) as client:
        seen: list[str] = []
        streaming = asyncio.create_task(stream_until_done(client, sid, seen))
        snapshots = []
        deadline = time.monotonic() + 20
        while not streaming.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if seen:
                reply = await last_reply(client, sid)
                if reply["status"] == STREAMING:
                    snapshots.append(reply["content"])
        events = await streaming
        final = await last_reply(client, sid)
    assert events[-1]["type"] == "done"
    assert (final["status"], final["content"]) == ("complete", full)
    # While streaming, the stored text grew, always whole deltas from the start of the reply.
    written = [text for text in snapshots if text]
    assert len(set(written)) >= 3
    for text in written:
        assert full.startswith(text)
        assert text.endswith(" ")
    assert written == sorted(written, key=len)


async def test_text_is_written_by_a_timer_never_per_chunk(
    store_url: str, tmp_path: Path, owner: str
) -> None:
    store = await open_store(store_url, tmp_path)
    updates: list[str] = []

    def _count(statement: str) -> None:
        if statement.lstrip().upper().startswith("UPDATE MESSAGES"):
            updates.append(statement)

    @event.listens_for(store.engine.sync_engine, "before_cursor_execute")
    def _count_sqlalchemy(*args: Any) -> None:
        _count(args[2])

    leases = ReplyLeases(store, flush_seconds=0.2)
    try:
        if store.sqlite_writer is not None:  # SQLite's hot writes bypass SQLAlchemy
            await store.sqlite_writer.run(lambda c: c.set_trace_callback(_count))
        record = await store.append_turn(
            owner,
            "chat_timer_00001",
            language="hebrew",
            expected_last_seq=0,
            new_messages=[NewMessage("user", HEBREW)],
            lease=leases.lease,
        )
        parts = leases.track(record.assistant_pk)
        leases.start()
        started = time.monotonic()
        for i in range(200):  # 200 deltas in about a second
            parts.append(f"{i} ")
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.5)  # lets the timer write the rest
        reply = (await store.get_session(owner, "chat_timer_00001")).messages[-1]
        assert reply.content == "".join(f"{i} " for i in range(200))
        assert reply.status == STREAMING
        # One statement per 0.2 s tick (text or lease only), not one per delta.
        assert 2 <= len(updates) <= (elapsed + 0.5) / 0.2 + 2
    finally:
        await leases.close()
        await store.close()


async def test_a_worker_starting_beside_a_live_stream_leaves_it_alone(
    fake_engine: FakeEngine, database: dict[str, Any]
) -> None:
    state = fake_engine.state
    state.chunks = [f"מים{i} " for i in range(100)]
    state.chunk_delay = 0.05  # 5 s: more than three leases
    full = "".join(state.chunks)
    sid = session_id("two_workers")
    settings = settings_for(fake_engine, database)
    async with gateway(settings) as first:
        seen: list[str] = []
        streaming = asyncio.create_task(stream_until_done(first, sid, seen))
        while len(seen) < 40:  # 2 s in: the placeholder is older than its first lease
            assert not streaming.done()
            await asyncio.sleep(0.02)
        # A second worker starts on the same store (start-up recovery runs) and serves.
        async with gateway(settings) as second:
            reply = await last_reply(second, sid)
            assert reply["status"] == STREAMING
            assert full.startswith(reply["content"])
            assert reply["content"]
            # The live stream still owns the session: a concurrent turn is refused.
            response = await second.post(
                "/api/chat/stream",
                json={"messages": [{"role": "user", "content": "ועוד"}], "session_id": sid},
            )
            assert response.status_code == 409
            # The second worker's periodic sweep (every lease) leaves it alone too.
            watch_until = time.monotonic() + 2.5
            while time.monotonic() < watch_until and not streaming.done():
                # "complete" once the stream has ended; never "interrupted".
                assert (await last_reply(second, sid))["status"] in {STREAMING, "complete"}
                await asyncio.sleep(0.1)
            events = await streaming
            assert events[-1]["type"] == "done"
            assert "".join(seen) == full
            final = await last_reply(second, sid)
            assert (final["status"], final["content"]) == ("complete", full)


async def test_a_dead_workers_reply_is_swept_by_a_running_worker(
    fake_engine: FakeEngine, database: dict[str, Any], tmp_path: Path
) -> None:
    sid = session_id("dead_worker")
    settings = settings_for(fake_engine, database)
    async with gateway(settings) as client:
        # Another worker stores a turn, renews its lease once with some text, and dies.
        dead: SessionStore = await open_store(settings.database_url, settings.data_dir)
        try:
            record = await dead.append_turn(
                "default",
                sid,
                language="hebrew",
                expected_last_seq=0,
                new_messages=[NewMessage("user", HEBREW)],
            )
            leases = ReplyLeases(dead, flush_seconds=0.6)  # lease 3 s
            leases.track(record.assistant_pk).append("חצי תשובה")
            await leases.flush()
        finally:
            await dead.close()
        # While its lease holds, the reply counts as live: a new turn is refused.
        response = await client.post(
            "/api/chat/stream",
            json={"messages": [{"role": "user", "content": "שוב"}], "session_id": sid},
        )
        assert response.status_code == 409
        # No request and no restart needed: the running worker's sweep marks it.
        deadline = time.monotonic() + 10
        while (reply := await last_reply(client, sid))["status"] == STREAMING:
            assert time.monotonic() < deadline, "the abandoned reply was never swept"
            await asyncio.sleep(0.1)
        assert (reply["status"], reply["content"]) == ("interrupted", "חצי תשובה")
        fake_engine.state.chunks = ["בסדר"]
        response, events = await stream_events(
            client, {"messages": [{"role": "user", "content": "שוב"}], "session_id": sid}
        )
        assert events[-1]["type"] == "done"
        body = (await client.get(f"/api/sessions/{sid}")).json()
        assert [(m["content"], m["status"]) for m in body["messages"]] == [
            (HEBREW, "complete"),
            ("חצי תשובה", "interrupted"),
            ("שוב", "complete"),
            ("בסדר", "complete"),
        ]
