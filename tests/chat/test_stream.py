"""``POST /api/chat/stream`` against the fake engine: format, errors, disconnects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Literal

import httpx
import orjson
import pytest

from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine
from tests.sse import parse_events, stream_events

HEBREW = "שלום! תוכל לספר לי בדיחה?"


async def test_streams_content_then_exactly_one_done(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["שלום", " עולם", " 👋"]
    response, events = await stream_events(
        client, {"messages": [{"role": "user", "content": HEBREW}], "stream": True}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert [e["type"] for e in events] == ["content", "content", "content", "done"]
    assert "".join(e["content"] for e in events[:-1]) == "שלום עולם 👋"
    done = events[-1]
    assert done["session_id"] == response.headers["x-session-id"]
    assert done["session_id"].startswith("chat_")
    assert done["finish_reason"] == "stop"


async def test_hebrew_is_sent_unescaped(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    fake_engine.state.chunks = ["שלום"]
    async with client.stream(
        "POST", "/api/chat/stream", json={"messages": [{"role": "user", "content": HEBREW}]}
    ) as response:
        raw = await response.aread()
    assert "שלום".encode() in raw
    assert b"\\u05" not in raw


async def test_given_session_id_is_kept(client: httpx.AsyncClient) -> None:
    session_id = "chat_my-session_0001"
    response, events = await stream_events(
        client, {"messages": [{"role": "user", "content": "hi"}], "session_id": session_id}
    )
    assert response.headers["x-session-id"] == session_id
    assert events[-1] == {
        "type": "done",
        "session_id": session_id,
        "finish_reason": "stop",
        "truncated_messages": 0,  # present in every done event, 0 when nothing was left out
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }


async def test_every_content_event_reads_in_both_dialects(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["שלום", ' "עולם"\n', " 👋"]
    response, events = await stream_events(
        client, {"messages": [{"role": "user", "content": HEBREW}], "stream": True}
    )
    assert response.status_code == 200
    contents = [e for e in events if e["type"] == "content"]
    # The seed's reader: ``content``; the original web client: ``choices[0].delta.content``.
    assert [e["content"] for e in contents] == ["שלום", ' "עולם"\n', " 👋"]
    assert [e["choices"][0]["delta"]["content"] for e in contents] == [
        "שלום",
        ' "עולם"\n',
        " 👋",
    ]
    assert events[-1]["choices"][0]["delta"] == {}
    assert "content" not in events[-1]["choices"][0]["delta"]


async def test_prompt_gets_system_prompt_in_detected_language(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    await stream_events(client, {"messages": [{"role": "user", "content": HEBREW}]})
    await stream_events(client, {"messages": [{"role": "user", "content": "Tell me a joke"}]})
    hebrew_call, english_call = fake_engine.state.requests
    assert hebrew_call["messages"][0]["role"] == "system"
    assert "עברית" in hebrew_call["messages"][0]["content"]
    assert "English" in english_call["messages"][0]["content"]
    assert hebrew_call["messages"][1] == {"role": "user", "content": HEBREW}
    assert hebrew_call["stream"] is True


async def test_explicit_language_and_client_system_message_win(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    await stream_events(
        client, {"messages": [{"role": "user", "content": "hello"}], "language": "hebrew"}
    )
    await stream_events(
        client,
        {"messages": [{"role": "system", "content": "Be terse."},
                      {"role": "user", "content": "hello"}]},
    )  # fmt: skip
    forced, custom = fake_engine.state.requests
    assert "עברית" in forced["messages"][0]["content"]
    assert custom["messages"][0] == {"role": "system", "content": "Be terse."}
    assert len(custom["messages"]) == 2


@pytest.mark.parametrize("flavor", ["llamacpp", "vllm"])
async def test_sampling_defaults_follow_the_engine(
    client: httpx.AsyncClient, fake_engine: FakeEngine, flavor: Literal["llamacpp", "vllm"]
) -> None:
    fake_engine.state.flavor = flavor
    await stream_events(client, {"messages": [{"role": "user", "content": "ספר לי בדיחה"}]})
    sent = fake_engine.state.requests[0]
    if flavor == "llamacpp":
        # The embedded base model loops without them (docs/clients-benchmarks.md).
        assert sent["dry_multiplier"] == 0.8
        assert sent["repeat_penalty"] == 1.1
        assert sent["max_tokens"] == 512
    else:
        assert "dry_multiplier" not in sent
        assert "repeat_penalty" not in sent
        assert sent["max_tokens"] == 1024  # LLM_API_DEFAULT_MAX_TOKENS


async def test_temperature_and_max_tokens_are_passed_on(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    await stream_events(
        client,
        {"messages": [{"role": "user", "content": "x"}], "temperature": 0.2, "max_tokens": 7},
    )
    sent = fake_engine.state.requests[0]
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 7
    assert sent["model"] == "fake-model"


async def test_non_streaming_request_gets_one_json_answer(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["a", "b"]
    response = await client.post(
        "/api/chat/stream", json={"messages": [{"role": "user", "content": "x"}], "stream": False}
    )
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "type": "message",
        "content": "ab",
        "session_id": response.headers["x-session-id"],
        "finish_reason": "stop",
        "truncated_messages": 0,
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": ""}]}, "content"),
        ({"messages": [{"role": "user", "content": "   "}]}, "whitespace"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100_000}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "language": "klingon"}, "language"),
        ({"messages": [{"role": "user", "content": "hi"}], "session_id": "abc"}, "session_id"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message"),
        ({}, "messages"),
    ],
)
async def test_bad_input_is_422_and_never_reaches_engine(
    client: httpx.AsyncClient, fake_engine: FakeEngine, body: dict[str, object], fragment: str
) -> None:
    response = await client.post("/api/chat/stream", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    assert fake_engine.state.requests == []


async def test_malformed_json_is_422(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    response = await client.post(
        "/api/chat/stream", content=b'{"messages": [', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["error"]["message"]
    assert fake_engine.state.requests == []


async def test_ten_megabyte_body_is_413(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    big = {"messages": [{"role": "user", "content": "א" * 5_000_000}]}
    response = await client.post("/api/chat/stream", json=big)
    assert response.status_code == 413
    assert "1000000 bytes" in response.json()["error"]["message"]
    assert fake_engine.state.requests == []


async def test_chunked_body_over_limit_is_413(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"messages":[{"role":"user","content":"'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}]}'

    response = await client.post(
        "/api/chat/stream", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert fake_engine.state.requests == []


async def test_engine_rejection_before_first_byte_is_a_real_status(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.fail_status = 400
    fake_engine.state.fail_message = "the prompt is longer than the context window"
    response = await client.post(
        "/api/chat/stream", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "engine_rejected"
    assert "longer than the context window" in error["message"]


async def test_engine_server_error_before_first_byte_is_502(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.fail_status = 500
    response = await client.post(
        "/api/chat/stream", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "engine_bad_response"


async def test_engine_down_is_503_and_recovers_without_restart(fake_engine: FakeEngine) -> None:
    from tests.conftest import free_port
    from tests.fakes import FakeEngine as Engine

    port = free_port()
    settings = gateway_settings(f"http://127.0.0.1:{port}")
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        down = await http.post("/api/chat/stream", json=body)
        assert down.status_code == 503
        assert down.json()["error"]["type"] == "engine_unavailable"
        assert down.headers["retry-after"]
        health = await http.get("/api/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"

        # The engine comes (back) up on that port: the same gateway serves again.
        engine = Engine()
        engine.app.router.freeze()
        from aiohttp import web

        runner = web.AppRunner(engine.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            response, events = await stream_events(http, body)
            assert response.status_code == 200
            assert events[-1]["type"] == "done"
            assert (await http.get("/api/health")).json()["status"] == "healthy"
        finally:
            await runner.cleanup()


async def test_timeout_before_first_token_is_504(fake_engine: FakeEngine) -> None:
    fake_engine.state.first_chunk_delay = 3
    settings = gateway_settings(fake_engine.url, request_timeout=0.5)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post(
            "/api/chat/stream", json={"messages": [{"role": "user", "content": "hi"}]}
        )
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "engine_timeout"


async def test_engine_error_after_first_byte_is_one_error_event(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.error_after = 2
    response, events = await stream_events(
        client, {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 200
    assert [e["type"] for e in events] == ["content", "content", "error"]
    assert events[-1]["retryable"] is False
    assert "mid-stream failure" in events[-1]["error"]


async def test_engine_dropping_connection_mid_stream_is_retryable_error_event(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.drop_after = 3
    response, events = await stream_events(
        client, {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 200
    assert [e["type"] for e in events][-1] == "error"
    assert events[-1]["retryable"] is True
    assert sum(1 for e in events if e["type"] in {"done", "error"}) == 1


async def test_client_disconnect_closes_upstream_within_a_second(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    state = fake_engine.state
    state.chunks = [f"t{i} " for i in range(400)]
    state.chunk_delay = 0.05
    async with client.stream(
        "POST", "/api/chat/stream", json={"messages": [{"role": "user", "content": "hi"}]}
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:") and orjson.loads(line[5:])["type"] == "content":
                break
    disconnected = time.monotonic()
    while state.open_streams() and time.monotonic() - disconnected < 2:  # noqa: ASYNC110 - polling another server's state
        await asyncio.sleep(0.02)
    record = state.streams[0]
    assert record.closed_at is not None, "the engine request stayed open"
    assert record.closed_at - disconnected < 1.0
    assert not record.completed
    assert record.chunks_sent < 100


async def test_keepalive_comments_during_long_waits(fake_engine: FakeEngine) -> None:
    fake_engine.state.chunks = ["a", "b"]
    fake_engine.state.chunk_delay = 1.3
    settings = gateway_settings(fake_engine.url, sse_ping_seconds=1)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url) as http,
        http.stream("POST", "/api/chat/stream", json=body) as response,
    ):
        raw = (await response.aread()).decode()
    assert ": ping" in raw
    assert [e["type"] for e in parse_events(raw)] == ["content", "content", "done"]
