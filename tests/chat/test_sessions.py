"""Server-side conversations through the real gateway and the fake engine."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from llm_api.chat.store import SQLITE_FILE
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine
from tests.sse import stream_events

HEBREW_1 = "שלום! מה שלומך היום?"
HEBREW_2 = "ספר לי על ירושלים, בבקשה."
MIXED_3 = "What is the population of תל אביב?"


@pytest.fixture(params=["sqlite", "postgresql"])
async def http(
    request: pytest.FixtureRequest, fake_engine: FakeEngine, postgres_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    overrides: dict[str, Any] = {}
    if request.param == "postgresql":
        overrides["database_url"] = postgres_url
    async with (
        serve_gateway(gateway_settings(fake_engine.url, **overrides)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


async def chat(
    client: httpx.AsyncClient, messages: list[dict[str, str]], session_id: str | None = None
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    body: dict[str, Any] = {"messages": messages}
    if session_id is not None:
        body["session_id"] = session_id
    return await stream_events(client, body)


def stored(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(m["role"], m["content"], m["status"]) for m in body["messages"]]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


async def test_full_history_and_only_new_clients_store_the_same(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["תשובה", " ראשונה"]
    replies = ["תשובה ראשונה"]
    full_id, new_id = "chat_full_history_01", "chat_only_new_0001"

    history: list[dict[str, str]] = []
    for text in (HEBREW_1, HEBREW_2, MIXED_3):
        history.append(user(text))
        response, events = await chat(http, history, full_id)
        assert response.status_code == 200
        assert events[-1]["type"] == "done"
        history.append(assistant("".join(e["content"] for e in events[:-1])))
        response, events = await chat(http, [user(text)], new_id)
        assert events[-1]["type"] == "done"

    full = (await http.get(f"/api/sessions/{full_id}")).json()
    new = (await http.get(f"/api/sessions/{new_id}")).json()
    assert stored(full) == stored(new)
    assert stored(full) == [
        ("user", HEBREW_1, "complete"),
        ("assistant", replies[0], "complete"),
        ("user", HEBREW_2, "complete"),
        ("assistant", replies[0], "complete"),
        ("user", MIXED_3, "complete"),
        ("assistant", replies[0], "complete"),
    ]
    # The engine saw the whole conversation both ways: the last prompts are identical.
    full_prompt, new_prompt = (
        fake_engine.state.requests[-2]["messages"],
        fake_engine.state.requests[-1]["messages"],
    )
    assert full_prompt == new_prompt
    assert [m["role"] for m in new_prompt] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]


async def test_duplicate_resend_is_answered_from_the_store(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    session_id = "chat_resend_000001"
    fake_engine.state.chunks = ["אחת", " שתיים"]
    first = await chat(http, [user(HEBREW_1)], session_id)
    calls = len(fake_engine.state.requests)
    for _ in range(2):
        response, events = await chat(http, [user(HEBREW_1)], session_id)
        assert response.status_code == 200
        assert [e for e in events if e["type"] == "content"] == [
            {
                "type": "content",
                "content": "אחת שתיים",
                "choices": [{"index": 0, "delta": {"content": "אחת שתיים"}}],
            }
        ]
        assert events[-1]["type"] == "done"
    assert len(fake_engine.state.requests) == calls  # no new engine call
    assert first[1][-1]["session_id"] == session_id
    # A full-history client resending turn 2 is deduplicated the same way.
    await chat(http, [user(HEBREW_1), assistant("אחת שתיים"), user(HEBREW_2)], session_id)
    await chat(http, [user(HEBREW_1), assistant("אחת שתיים"), user(HEBREW_2)], session_id)
    body = (await http.get(f"/api/sessions/{session_id}")).json()
    assert [m["content"] for m in body["messages"]] == [
        HEBREW_1,
        "אחת שתיים",
        HEBREW_2,
        "אחת שתיים",
    ]


async def test_disconnect_stores_interrupted_reply_with_text_so_far(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    session_id = "chat_disconnect_01"
    state = fake_engine.state
    state.chunks = [f"מילה{i} " for i in range(400)]
    state.chunk_delay = 0.03
    received = ""
    async with http.stream(
        "POST", "/api/chat/stream", json={"messages": [user(HEBREW_1)], "session_id": session_id}
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                event = orjson.loads(line[5:])
                received += event["content"]
                if len(received) > 30:
                    break
    deadline = time.monotonic() + 5
    while True:
        body = (await http.get(f"/api/sessions/{session_id}")).json()
        if body["messages"][-1]["status"] != "streaming" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    reply = body["messages"][-1]
    assert reply["status"] == "interrupted"
    assert reply["content"].startswith(received)
    assert len(reply["content"]) < len("".join(state.chunks))

    # A follow-up after the interrupted turn works, and sees the partial reply.
    state.chunks, state.chunk_delay = ["בסדר"], 0.0
    response, events = await chat(http, [user(HEBREW_2)], session_id)
    assert events[-1]["type"] == "done"
    prompt = state.requests[-1]["messages"]
    assert prompt[-2] == {"role": "assistant", "content": reply["content"]}
    body = (await http.get(f"/api/sessions/{session_id}")).json()
    assert [m["status"] for m in body["messages"]] == [
        "complete",
        "interrupted",
        "complete",
        "complete",
    ]


async def test_engine_error_mid_stream_is_stored_as_error(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["א", "ב", "ג", "ד"]
    fake_engine.state.error_after = 2
    _, events = await chat(http, [user(HEBREW_1)], "chat_engine_error1")
    assert events[-1]["type"] == "error"
    body = (await http.get("/api/sessions/chat_engine_error1")).json()
    assert stored(body) == [("user", HEBREW_1, "complete"), ("assistant", "אב", "error")]
    # Resending the same request retries in place of the failed reply.
    fake_engine.state.error_after = None
    _response, events = await chat(http, [user(HEBREW_1)], "chat_engine_error1")
    assert events[-1]["type"] == "done"
    body = (await http.get("/api/sessions/chat_engine_error1")).json()
    assert stored(body) == [("user", HEBREW_1, "complete"), ("assistant", "אבגד", "complete")]


async def test_engine_refusal_before_first_byte_leaves_user_message_and_error(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.fail_status = 500
    response = await http.post(
        "/api/chat/stream", json={"messages": [user("hi")], "session_id": "chat_refused_0001"}
    )
    assert response.status_code == 502
    body = (await http.get("/api/sessions/chat_refused_0001")).json()
    assert stored(body) == [("user", "hi", "complete"), ("assistant", "", "error")]
    # A new question after the failure: the prompt joins the two user turns (Gemma's
    # template needs alternating roles) and the store keeps both.
    fake_engine.state.fail_status = None
    await chat(http, [user("second")], "chat_refused_0001")
    assert fake_engine.state.requests[-1]["messages"][1:] == [user("hi\n\nsecond")]


async def test_concurrent_request_on_a_streaming_session_is_409(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    session_id = "chat_concurrent_01"
    fake_engine.state.chunks = ["a", "b", "c", "d"]
    fake_engine.state.chunk_delay = 0.3
    first = asyncio.create_task(chat(http, [user("one")], session_id))
    await asyncio.sleep(0.3)
    second = await http.post(
        "/api/chat/stream", json={"messages": [user("two")], "session_id": session_id}
    )
    assert second.status_code == 409
    assert second.json()["error"]["type"] == "conflict_error"
    _, events = await first
    assert events[-1]["type"] == "done"
    body = (await http.get(f"/api/sessions/{session_id}")).json()
    assert [m["content"] for m in body["messages"]] == ["one", "abcd"]


async def test_sessions_endpoints_shapes_pagination_and_errors(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["שלום"]
    ids = [f"chat_listing_{i:04d}" for i in range(5)]
    for session_id in ids:
        await chat(http, [user(HEBREW_1)], session_id)

    page = (await http.get("/api/sessions", params={"limit": 2})).json()
    assert set(page) == {"sessions", "next"}
    assert [s["session_id"] for s in page["sessions"]] == [ids[4], ids[3]]
    summary = page["sessions"][0]
    assert set(summary) == {
        "session_id", "title", "language", "created_at", "updated_at", "message_count"
    }  # fmt: skip
    assert summary["message_count"] == 2
    assert summary["language"] == "hebrew"
    seen = [s["session_id"] for s in page["sessions"]]
    while page["next"]:
        page = (await http.get("/api/sessions", params={"limit": 2, "before": page["next"]})).json()
        seen += [s["session_id"] for s in page["sessions"]]
    assert seen[:5] == ids[::-1]

    one = (await http.get(f"/api/sessions/{ids[0]}")).json()
    assert set(one) == set(summary) | {"messages"}
    assert set(one["messages"][0]) == {"role", "content", "status", "created_at"}

    renamed = await http.patch(f"/api/sessions/{ids[0]}", json={"title": "שיחה על ירושלים"})
    assert renamed.status_code == 200
    assert renamed.json()["title"] == "שיחה על ירושלים"
    too_long = await http.patch(f"/api/sessions/{ids[0]}", json={"title": "א" * 201})
    assert too_long.status_code == 422
    assert (await http.get(f"/api/sessions/{ids[0]}")).json()["title"] == "שיחה על ירושלים"

    exported = await http.get(f"/api/sessions/{ids[0]}/export", params={"format": "json"})
    assert exported.json()["messages"] == one["messages"]
    assert "attachment" in exported.headers["content-disposition"]
    markdown = await http.get(f"/api/sessions/{ids[0]}/export", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# שיחה על ירושלים\n")
    assert HEBREW_1 in markdown.text
    assert "## Assistant" in markdown.text
    bad_format = await http.get(f"/api/sessions/{ids[0]}/export", params={"format": "pdf"})
    assert bad_format.status_code == 422

    assert (await http.delete(f"/api/sessions/{ids[0]}")).status_code == 204
    for method, path in [
        ("GET", f"/api/sessions/{ids[0]}"),
        ("PATCH", f"/api/sessions/{ids[0]}"),
        ("DELETE", f"/api/sessions/{ids[0]}"),
        ("GET", f"/api/sessions/{ids[0]}/export"),
        ("GET", "/api/sessions/chat_never_existed"),
    ]:
        response = await http.request(
            method, path, json={"title": "x"} if method == "PATCH" else None
        )
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["type"] == "not_found_error"
    assert (await http.get("/api/sessions/not-a-session-id")).status_code == 422
    assert (await http.get("/api/sessions", params={"before": "garbage!"})).status_code == 422
    assert (await http.get("/api/sessions", params={"limit": 0})).status_code == 422


async def test_unknown_well_formed_id_starts_a_session_and_malformed_is_422(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    response, events = await chat(http, [user("hi")], "chat_brand-new_id_x")
    assert events[-1]["session_id"] == "chat_brand-new_id_x"
    assert (await http.get("/api/sessions/chat_brand-new_id_x")).status_code == 200
    for bad in ["chat_short", "chat_" + "a" * 65, "chat_bad id!", "session_12345678"]:
        response = await http.post(
            "/api/chat/stream", json={"messages": [user("hi")], "session_id": bad}
        )
        assert response.status_code == 422, bad
    no_id, events = await chat(http, [user("hi")])
    assert (await http.get(f"/api/sessions/{no_id.headers['x-session-id']}")).status_code == 200


async def test_history_that_contradicts_the_store_is_409(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["answer"]
    await chat(http, [user("first")], "chat_contradict_1")
    response = await http.post(
        "/api/chat/stream",
        json={
            "messages": [user("first"), assistant("something else"), user("next")],
            "session_id": "chat_contradict_1",
        },
    )
    assert response.status_code == 409
    body = (await http.get("/api/sessions/chat_contradict_1")).json()
    assert len(body["messages"]) == 2


async def test_title_is_written_after_the_first_exchange(fake_engine: FakeEngine) -> None:
    fake_engine.state.chunks = ["תשובה"]
    fake_engine.state.replies.append("כותרת: מזג האוויר בירושלים היום בבוקר ובערב")
    fake_engine.state.first_chunk_delay = 0
    settings = gateway_settings(fake_engine.url, chat_titles=True)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        _response, events = await chat(
            client, [user("מה מזג האוויר בירושלים?")], "chat_titled_0001"
        )
        assert events[-1]["type"] == "done"
        deadline = time.monotonic() + 5
        title = None
        while title is None and time.monotonic() < deadline:
            title = (await client.get("/api/sessions/chat_titled_0001")).json()["title"]
            await asyncio.sleep(0.05)
        assert title == "מזג האוויר בירושלים היום בבוקר ובערב"
        title_call = fake_engine.state.requests[-1]
        assert title_call["stream"] is False
        assert "מה מזג האוויר בירושלים?" in title_call["messages"][0]["content"]
        # The second exchange does not retitle.
        await chat(client, [user("ומחר?")], "chat_titled_0001")
        await asyncio.sleep(0.2)
        assert len([r for r in fake_engine.state.requests if not r["stream"]]) == 1


async def test_title_in_wrong_language_falls_back_to_the_first_words(
    fake_engine: FakeEngine,
) -> None:
    fake_engine.state.chunks = ["תשובה"]
    fake_engine.state.replies.append("Weather Talk")
    settings = gateway_settings(fake_engine.url, chat_titles=True)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        await chat(
            client, [user("מה מזג האוויר בירושלים מחר בבוקר, ומה ללבוש?")], "chat_titled_0002"
        )
        deadline = time.monotonic() + 5
        title = None
        while title is None and time.monotonic() < deadline:
            title = (await client.get("/api/sessions/chat_titled_0002")).json()["title"]
            await asyncio.sleep(0.05)
    assert title == "מה מזג האוויר בירושלים מחר בבוקר"


async def test_title_echoing_the_prompt_falls_back_to_the_first_words(
    fake_engine: FakeEngine,
) -> None:
    # What the embedded Gemma 3 270M answered for every stored title before this check.
    fake_engine.state.chunks = ["תשובה"]
    fake_engine.state.replies.append("כתוב כותרת קצרה בעברית, עד שש")
    settings = gateway_settings(fake_engine.url, chat_titles=True)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        await chat(client, [user("שלום! תוכל לספר לי בדיחה?")], "chat_titled_0003")
        deadline = time.monotonic() + 5
        title = None
        while title is None and time.monotonic() < deadline:
            title = (await client.get("/api/sessions/chat_titled_0003")).json()["title"]
            await asyncio.sleep(0.05)
    assert title == "שלום! תוכל לספר לי בדיחה?"


async def test_locked_database_is_503_then_recovers(
    fake_engine: FakeEngine, tmp_path: Path
) -> None:
    settings = gateway_settings(fake_engine.url, database_busy_timeout=0.3)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        await chat(client, [user("before")], "chat_locked_00001")
        # The autouse fixture in tests/conftest.py puts the store in tmp_path / 'data'.
        blocker = sqlite3.connect(tmp_path / "data" / SQLITE_FILE, timeout=0.1)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            response = await client.post(
                "/api/chat/stream",
                json={"messages": [user("during")], "session_id": "chat_locked_00001"},
            )
            assert response.status_code == 503
            assert response.json()["error"]["type"] == "store_unavailable"
            assert response.headers["retry-after"]
            # The engine request opened beside the commit was closed, not left generating.
            assert fake_engine.state.open_streams() == 0
        finally:
            blocker.rollback()
            blocker.close()
        body = (await client.get("/api/sessions/chat_locked_00001")).json()
        assert [m["content"] for m in body["messages"] if m["role"] == "user"] == ["before"]
        response, events = await chat(client, [user("after")], "chat_locked_00001")
        assert events[-1]["type"] == "done"
        body = (await client.get("/api/sessions/chat_locked_00001")).json()
        assert [m["content"] for m in body["messages"] if m["role"] == "user"] == [
            "before",
            "after",
        ]


async def test_active_sessions_in_health_come_from_the_store(fake_engine: FakeEngine) -> None:
    settings = gateway_settings(fake_engine.url)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        await chat(client, [user("one")], "chat_active_00001")
        await chat(client, [user("two")], "chat_active_00002")
        assert (await client.get("/api/health")).json()["active_sessions"] == 2
    # A new gateway process on the same store sees the same number.
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/api/health")).json()["active_sessions"] == 2
    tiny = gateway_settings(fake_engine.url, active_session_minutes=0.0001)
    async with serve_gateway(tiny) as url, httpx.AsyncClient(base_url=url) as client:
        await asyncio.sleep(0.05)
        assert (await client.get("/api/health")).json()["active_sessions"] == 0


async def test_client_gone_before_the_first_token_leaves_no_streaming_reply(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    session_id = "chat_gone_early_001"
    fake_engine.state.first_chunk_delay = 1.0
    fake_engine.state.chunks = [f"מילה{i} " for i in range(300)]
    fake_engine.state.chunk_delay = 0.02
    request = asyncio.create_task(chat(http, [user(HEBREW_1)], session_id))
    await asyncio.sleep(0.4)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    deadline = time.monotonic() + 8
    while True:
        found = await http.get(f"/api/sessions/{session_id}")
        status = found.json()["messages"][-1]["status"] if found.status_code == 200 else None
        if status not in {"streaming", None} or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert status == "interrupted"
    fake_engine.state.first_chunk_delay, fake_engine.state.chunk_delay = 0, 0
    _, events = await chat(http, [user(HEBREW_2)], session_id)
    assert events[-1]["type"] == "done"


async def test_search_folds_niqqud_final_letters_and_case(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["תשובה"]
    await chat(http, [user("ספר לי על קְרוֹקוֹדִילִים בירוחם")], "chat_search_niqqud")
    await chat(http, [user("Notes for the Zanzibar BUDGET review")], "chat_search_english")
    await chat(http, [user("מה השעה עכשיו?")], "chat_search_other")
    await http.patch("/api/sessions/chat_search_other", json={"title": "תכנון חופשה בגלבוע"})

    async def found(q: str) -> list[str]:
        response = await http.get("/api/sessions", params={"q": q})
        assert response.status_code == 200
        return [s["session_id"] for s in response.json()["sessions"]]

    # Stored with niqqud, searched without, and the other way round.
    assert await found("קרוקודיל") == ["chat_search_niqqud"]
    assert await found("בִּירוּחָם") == ["chat_search_niqqud"]
    # A final letter typed mid-word (as when the word is cut) still matches.
    assert await found("ירוחמ") == ["chat_search_niqqud"]
    assert await found("zanzibar budget") == ["chat_search_english"]
    # Titles are searched too; LIKE wildcards in the query are literal.
    assert await found("חופשה בגלבוע") == ["chat_search_other"]
    assert await found("%_%zanzibar") == []
    assert {"chat_search_niqqud", "chat_search_other"} <= set(await found(""))
