"""Engine faults from the fault-injecting fake engine, on every path that reaches the engine.

Each fault gives a typed error (a real status before the first byte, one error event after),
the turn's stored status says what happened, the worker survives, and the next request works
with no restart.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine, FakeEngineState
from tests.sse import stream_events

# (fault, state changes) — faults that strike after the first content chunk.
MID_STREAM: list[tuple[str, dict[str, Any]]] = [
    ("dropped", {"drop_after": 2}),
    ("malformed", {"malformed_after": 2}),
    ("ten_mb_line", {"huge_line_after": 2}),
    ("stall", {"stall_after": 2}),
]
# (fault, state changes, status, error type) — faults before the first byte.
BEFORE: list[tuple[str, dict[str, Any], int, str]] = [
    ("500", {"fail_status": 500}, 502, "engine_bad_response"),
    ("loading", {"loading": True}, 503, "engine_unavailable"),
    ("stall", {"first_chunk_delay": 5}, 504, "engine_timeout"),
]
CLEAN = FakeEngineState()


def heal(engine: FakeEngine) -> None:
    s = engine.state
    for name in ("drop_after", "malformed_after", "huge_line_after", "stall_after",
                 "fail_status", "loading", "first_chunk_delay"):  # fmt: skip
        setattr(s, name, getattr(CLEAN, name))


async def stored_reply(http: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    messages = (await http.get(f"/api/sessions/{session_id}")).json()["messages"]
    reply: dict[str, Any] = messages[-1]
    assert reply["role"] == "assistant"
    return reply


@pytest.mark.parametrize(("fault", "changes"), MID_STREAM, ids=[m[0] for m in MID_STREAM])
async def test_chat_stream_mid_stream_fault(
    fake_engine: FakeEngine, fault: str, changes: dict[str, Any]
) -> None:
    fake_engine.state.chunks = ["שלום", " לכם", " חברים", " יקרים"]
    settings = gateway_settings(fake_engine.url, request_timeout=1.0)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        for name, value in changes.items():
            setattr(fake_engine.state, name, value)
        body = {
            "messages": [{"role": "user", "content": "היי"}],
            "session_id": f"chat_fault_mid_{fault}",
        }
        response, events = await stream_events(http, body)
        assert response.status_code == 200
        kinds = [e["type"] for e in events]
        assert kinds[-1] == "error", events
        assert set(kinds[:-1]) <= {"content"}
        assert isinstance(events[-1]["retryable"], bool)
        reply = await stored_reply(http, f"chat_fault_mid_{fault}")
        assert reply["status"] in {"error", "interrupted"}
        # The text that reached the user is what is kept.
        assert reply["content"] == "".join(e["content"] for e in events[:-1])
        # Recovery without restart: the next turn of the same conversation completes.
        heal(fake_engine)
        body["messages"] = [{"role": "user", "content": "שוב"}]
        _response, events = await stream_events(http, body)
        assert events[-1]["type"] == "done"
        assert (await stored_reply(http, f"chat_fault_mid_{fault}"))["status"] == "complete"


@pytest.mark.parametrize(("fault", "changes", "status", "kind"), BEFORE, ids=[b[0] for b in BEFORE])
async def test_chat_stream_fault_before_first_byte(
    fake_engine: FakeEngine, fault: str, changes: dict[str, Any], status: int, kind: str
) -> None:
    settings = gateway_settings(fake_engine.url, request_timeout=1.0)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        for name, value in changes.items():
            setattr(fake_engine.state, name, value)
        session = f"chat_fault_before_{fault}"
        body = {"messages": [{"role": "user", "content": "היי"}], "session_id": session}
        response = await http.post("/api/chat/stream", json=body)
        assert response.status_code == status
        assert response.json()["error"]["type"] == kind
        heal(fake_engine)
        body["messages"] = [{"role": "user", "content": "שוב"}]
        _response, events = await stream_events(http, body)
        assert events[-1]["type"] == "done"


@pytest.mark.parametrize(("fault", "changes"), MID_STREAM, ids=[m[0] for m in MID_STREAM])
async def test_v1_stream_mid_stream_fault(
    fake_engine: FakeEngine, fault: str, changes: dict[str, Any]
) -> None:
    settings = gateway_settings(fake_engine.url, request_timeout=1.0)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        for name, value in changes.items():
            setattr(fake_engine.state, name, value)
        body = {"model": "fake-model", "stream": True,
                "messages": [{"role": "user", "content": "היי"}]}  # fmt: skip
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
        if fault in {"malformed", "ten_mb_line"}:
            # The relay passes the engine's events through without parsing them (its cost per
            # chunk is the point of it): the client gets the bad line as the engine wrote it,
            # then the rest of the stream. The worker is unharmed (checked below).
            assert lines[-1] == "data: [DONE]"
        else:
            # One error event, then [DONE] (the relay's contract after the first byte).
            assert lines[-1] == "data: [DONE]"
            last = orjson.loads(lines[-2][6:])
            assert last["error"]["message"], lines[-3:]
        heal(fake_engine)
        ok = await http.post("/v1/chat/completions", json={**body, "stream": False})
        assert ok.status_code == 200


@pytest.mark.parametrize(("fault", "changes", "status", "kind"), BEFORE, ids=[b[0] for b in BEFORE])
async def test_email_fault(
    fake_engine: FakeEngine, fault: str, changes: dict[str, Any], status: int, kind: str
) -> None:
    summary = {"title": "דוח", "summary": "עמית מבקש דוח."}
    settings = gateway_settings(fake_engine.url, request_timeout=1.0)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        changes = {"reply_delay": 5} if fault == "stall" else changes
        for name, value in changes.items():
            setattr(fake_engine.state, name, value)
        body = {"email_content": "מאת: עמית\nנא להכין דוח.", "length": 50}
        response = await http.post("/api/summarization/summarize", json=body)
        assert response.status_code == status
        assert response.json()["error"]["type"] == kind
        heal(fake_engine)
        fake_engine.state.reply_delay = 0
        fake_engine.state.replies = deque([orjson.dumps(summary).decode()])
        assert (await http.post("/api/summarization/summarize", json=body)).status_code == 200
