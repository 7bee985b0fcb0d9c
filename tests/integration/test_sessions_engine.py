"""A multi-turn Hebrew conversation on the real llama-server, kept in the store."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import gateway_settings, serve_gateway
from tests.sse import stream_events

pytestmark = pytest.mark.engine

QUESTIONS = ["שלום! ספר לי על ירושלים.", "ומה לגבי תל אביב?", "איזו מהן גדולה יותר?"]


async def test_hebrew_conversation_is_persisted_with_real_counts_and_title(
    real_engine_url: str,
) -> None:
    settings = gateway_settings(
        real_engine_url, max_model_len=4096, max_tokens_cap=1024, chat_titles=True
    )
    session_id = "chat_real_engine_hebrew"
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=120) as client,
    ):
        for question in QUESTIONS:
            response, events = await stream_events(
                client,
                {
                    "messages": [{"role": "user", "content": question}],
                    "session_id": session_id,
                    "max_tokens": 24,
                },
            )
            assert response.status_code == 200
            assert events[-1]["type"] == "done", events[-1]
            assert events[-1]["session_id"] == session_id
        # The title is written in the background; wait for it (the engine is slow on CPU).
        deadline = time.monotonic() + 60
        body = (await client.get(f"/api/sessions/{session_id}")).json()
        while body["title"] is None and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            body = (await client.get(f"/api/sessions/{session_id}")).json()

    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert [m["content"] for m in messages[::2]] == QUESTIONS
    assert all(m["status"] == "complete" for m in messages)
    assert all(m["content"].strip() for m in messages[1::2])
    assert body["language"] == "hebrew"
    title = body["title"]
    assert title
    assert len(title.split()) <= 6
    assert any("\u0590" <= ch <= "\u05ff" for ch in title)
