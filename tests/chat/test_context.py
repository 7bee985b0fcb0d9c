"""Context budgeting: whole turns, block cuts, counts from the engine's /tokenize.

The fake engine counts one token per whitespace-separated word; every message costs
MESSAGE_OVERHEAD more.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from llm_api.chat.context import (
    MESSAGE_OVERHEAD,
    ContextBudget,
    PromptMessage,
    choose_start,
    split_turns,
)
from llm_api.chat.store import DEFAULT_OWNER, open_store
from llm_api.engine.client import EngineClient, EngineLimits
from llm_api.errors import ContextTooLong
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine
from tests.sse import stream_events

HEBREW_WORD = "שלום"
ENGLISH_WORD = "hello"


@pytest.fixture
async def budget(fake_engine: FakeEngine) -> AsyncIterator[ContextBudget]:
    async with EngineClient(EngineLimits(fake_engine.url)) as engine:
        yield ContextBudget(engine)


def words(word: str, n: int) -> str:
    return " ".join([word] * n)


def test_choose_start_keeps_everything_that_fits() -> None:
    assert choose_start([10, 10, 10], [10, 10, 10], fixed=5, budget=35) == 0


def test_choose_start_cuts_to_half_and_holds_the_cut() -> None:
    # Budget 100, system 10: overflowing at turn 4 (10+4*25=110) drops to <= 50.
    sizes = [25, 25, 25, 25]
    assert choose_start(sizes, sizes, fixed=10, budget=100) == 3
    # The next turns keep the same first turn until the next overflow.
    for more, expected in [([20], 3), ([20, 20], 3), ([20, 20, 20], 3), ([20, 20, 20, 20], 6)]:
        grown = sizes + more
        assert choose_start(grown, grown, fixed=10, budget=100) == expected


def test_choose_start_replays_what_each_request_sent() -> None:
    # Turn sizes 30 (asked 15 + reply 15), budget 100, system 10.
    # Request 3 sent 10 + 30 + 30 + 15 = 85: no cut. Once turn 3 has its reply, request 4
    # replays request 3 as sent (still no cut), so the prefix stays; it cuts only when its
    # own ask overflows: 10 + 90 + 15 = 115.
    assert choose_start([30, 30, 15], [15, 15, 15], fixed=10, budget=100) == 0
    assert choose_start([30, 30, 30, 15], [15, 15, 15, 15], fixed=10, budget=100) == 3


def test_choose_start_keeps_a_lone_oversized_newest_turn() -> None:
    assert choose_start([10, 10, 500], [10, 10, 500], fixed=5, budget=100) == 2


def test_split_turns_starts_each_turn_at_a_user_message() -> None:
    messages = [
        PromptMessage("user", "a"),
        PromptMessage("assistant", "b"),
        PromptMessage("user", "c"),
        PromptMessage("user", "d"),
        PromptMessage("assistant", "e"),
    ]
    assert [[m.content for m in t] for t in split_turns(messages)] == [
        ["a", "b"],
        ["c"],
        ["d", "e"],
    ]


@pytest.mark.parametrize("word", [HEBREW_WORD, ENGLISH_WORD])
async def test_exact_fit_keeps_all_and_one_token_more_drops_whole_turns(
    budget: ContextBudget, word: str
) -> None:
    system = words(word, 10)  # 10 + 8 = 18 tokens
    history = [
        PromptMessage("user", words(word, 20)),  # 28
        PromptMessage("assistant", words(word, 20)),  # 28
        PromptMessage("user", words(word, 20)),  # 28
    ]
    exact = 18 + 3 * (20 + MESSAGE_OVERHEAD)
    fitted = await budget.fit(system, history, budget=exact)
    assert fitted.dropped == 0
    assert [m.content for m in fitted.messages] == [m.content for m in history]

    fresh = [PromptMessage(m.role, m.content) for m in history]
    fitted = await budget.fit(system, fresh, budget=exact - 1)
    assert fitted.dropped == 2  # the first turn, user and reply together
    assert [m.content for m in fitted.messages] == [history[2].content]


async def test_counts_are_cached_on_messages_and_reported_for_stored_rows(
    budget: ContextBudget,
) -> None:
    stored = PromptMessage("user", words(HEBREW_WORD, 50), pk=7)
    cached = PromptMessage("assistant", words(ENGLISH_WORD, 50), token_count=58, pk=8)
    new = PromptMessage("user", words(HEBREW_WORD, 5))
    fitted = await budget.fit("system", [stored, cached, new], budget=200)
    assert fitted.counted == {7: 58}
    assert new.token_count == 5 + MESSAGE_OVERHEAD


async def test_small_conversations_skip_tokenizing(budget: ContextBudget) -> None:
    message = PromptMessage("user", "short")
    fitted = await budget.fit("system", [message], budget=1000)
    assert message.token_count is None
    assert fitted.counted == {}


async def test_newest_message_alone_too_long_is_context_too_long(budget: ContextBudget) -> None:
    with pytest.raises(ContextTooLong):
        await budget.fit("system", [PromptMessage("user", words(HEBREW_WORD, 300))], budget=200)


async def test_gateway_truncates_in_blocks_with_a_stable_prefix(
    fake_engine: FakeEngine, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"  # where the autouse fixture of tests/conftest.py puts it
    fake_engine.state.chunks = [words("תשובה", 10)]
    settings = gateway_settings(
        fake_engine.url, max_model_len=400, max_tokens_cap=100, default_max_tokens=100
    )
    session_id = "chat_truncation_01"
    prompts: list[list[dict[str, str]]] = []
    truncated: list[int] = []
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        for turn in range(14):
            text = f"שאלה {turn} " + words("מילה", 10) + " and some English"
            response, events = await stream_events(
                client,
                {"messages": [{"role": "user", "content": text}], "session_id": session_id},
            )
            assert response.status_code == 200
            done = events[-1]
            assert done["type"] == "done"
            truncated.append(done["truncated_messages"])  # always present, 0 included
            prompts.append(fake_engine.state.requests[-1]["messages"])
        body = (await client.get(f"/api/sessions/{session_id}")).json()
        # The same count in the one-JSON answer of "stream": false.
        answer = await client.post(
            "/api/chat/stream",
            json={"messages": [{"role": "user", "content": "שאלה אחרונה " + words("מילה", 10)}],
                  "session_id": session_id, "stream": False},
        )  # fmt: skip
        assert answer.status_code == 200
        last_sent = fake_engine.state.requests[-1]["messages"][1:]
        last_body = (await client.get(f"/api/sessions/{session_id}")).json()

    # The counts learnt on the way are cached in the store (written as each reply ended):
    # every message but the last reply, which no prompt has needed yet.
    store = await open_store(None, data_dir)
    try:
        cached = (await store.get_session(DEFAULT_OWNER, session_id)).messages
    finally:
        await store.close()
    assert [m.token_count for m in cached[:-1]] == [
        len(m.content.split()) + MESSAGE_OVERHEAD for m in cached[:-1]
    ]
    assert cached[-1].token_count is None

    last_dropped = answer.json()["truncated_messages"]
    assert last_dropped > 0
    assert [m["content"] for m in last_sent] == [
        m["content"] for m in last_body["messages"][last_dropped : last_dropped + len(last_sent)]
    ]
    assert len(body["messages"]) == 28  # the store keeps everything
    assert truncated[0] == 0
    assert max(truncated) > 0
    stored_texts = [m["content"] for m in body["messages"]]
    for prompt, dropped in zip(prompts, truncated, strict=True):
        sent = prompt[1:]
        # Whole messages only, newest last, oldest ones dropped as whole turns.
        assert dropped % 2 == 0
        assert sent[0]["role"] == "user"
        assert [m["content"] for m in sent] == stored_texts[dropped : dropped + len(sent)]
        total = sum(len(m["content"].split()) + MESSAGE_OVERHEAD for m in prompt)
        assert total <= 400 - 100
    # While the cut holds, each prompt is the previous one plus the new turn, byte for
    # byte; the cut moves rarely, in blocks of several turns.
    pairs = list(itertools.pairwise(prompts))
    for (before, after), (cut_a, cut_b) in zip(pairs, itertools.pairwise(truncated), strict=True):
        if cut_a == cut_b:
            assert after[: len(before)] == before
        else:
            assert cut_b - cut_a >= 4
    moves = sum(1 for a, b in itertools.pairwise(truncated) if a != b)
    assert 1 <= moves <= 3


async def test_gateway_refuses_an_oversized_message_before_the_engine(
    fake_engine: FakeEngine,
) -> None:
    settings = gateway_settings(
        fake_engine.url, max_model_len=400, max_tokens_cap=100, default_max_tokens=100
    )
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/api/chat/stream",
            json={
                "messages": [{"role": "user", "content": words("ארוך", 500)}],
                "session_id": "chat_too_long_0001",
            },
        )
        assert response.status_code == 422
        assert response.json()["error"]["type"] == "context_length_exceeded"
        assert fake_engine.state.requests == []
        assert (await client.get("/api/sessions/chat_too_long_0001")).status_code == 404
