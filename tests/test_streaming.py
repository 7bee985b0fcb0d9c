"""EventStream: events pass through as sent, pings only fill silences, a disconnect closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from llm_api.streaming import PING, EventStream, RelayedStream


async def _serve(stream: RelayedStream, *, disconnect_after: float | None = None) -> list[bytes]:
    bodies: list[bytes] = []
    finished = asyncio.Event()

    async def receive() -> Message:
        if disconnect_after is None:
            await finished.wait()
        else:
            await asyncio.sleep(disconnect_after)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            if not message.get("more_body", False):
                finished.set()

    scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "GET", "headers": []}
    await asyncio.wait_for(stream(scope, receive, send), 5)
    return bodies


def _paced(gaps: list[float]) -> AsyncIterator[bytes]:
    async def events() -> AsyncIterator[bytes]:
        for i, gap in enumerate(gaps):
            await asyncio.sleep(gap)
            yield b'data: {"n":%d}\n\n' % i

    return events()


async def test_events_pass_through_unchanged_and_no_ping_while_they_flow() -> None:
    bodies = await _serve(EventStream(_paced([0.02] * 20), ping_seconds=0.1))
    assert bodies[:-1] == [b'data: {"n":%d}\n\n' % i for i in range(20)]
    assert bodies[-1] == b""
    assert PING not in bodies


async def test_a_silence_longer_than_the_interval_gets_a_ping_between_events() -> None:
    bodies = await _serve(EventStream(_paced([0.0, 0.45, 0.0]), ping_seconds=0.1))
    pings = [i for i, body in enumerate(bodies) if body == PING]
    assert pings, bodies
    assert all(0 < i < len(bodies) - 2 for i in pings)  # between the first and last event
    assert [b for b in bodies if b not in (PING, b"")] == [
        b'data: {"n":%d}\n\n' % i for i in range(3)
    ]


async def _endless(closed: asyncio.Event) -> AsyncIterator[bytes]:
    """Events every 10 ms until closed; ``closed`` is set when the consumer closes it."""
    try:
        while True:
            await asyncio.sleep(0.01)
            yield b"data: {}\n\n"
    finally:
        closed.set()


async def test_a_disconnect_closes_the_event_source() -> None:
    closed = asyncio.Event()

    await _serve(EventStream(_endless(closed), ping_seconds=0.1), disconnect_after=0.1)
    assert closed.is_set()


def test_media_type_and_headers() -> None:
    stream = EventStream(_paced([]), ping_seconds=1, headers={"X-Session-ID": "chat_x"})
    headers = dict(stream.headers)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-accel-buffering"] == "no"
    assert headers["cache-control"] == "no-store"
    assert headers["x-session-id"] == "chat_x"


async def test_a_cancellation_from_elsewhere_is_not_swallowed() -> None:
    """Only the stream's own disconnect watcher ends it quietly; a shutdown's cancel goes on."""
    closed = asyncio.Event()

    serving = asyncio.create_task(_serve(RelayedStream(_endless(closed))))
    await asyncio.sleep(0.05)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert closed.is_set()


async def test_the_plain_relay_stream_ends_quietly_on_disconnect_and_closes_its_source() -> None:
    closed = asyncio.Event()

    bodies = await _serve(RelayedStream(_endless(closed)), disconnect_after=0.1)
    assert closed.is_set()
    assert bodies  # it streamed until the client left
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
