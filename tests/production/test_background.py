"""Background work yields to people: affinity header, priority field, slot cap (fake engine)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path

import httpx
import orjson

from llm_api.email.batch import BatchOptions, Operation, run_batch_with_engine
from tests.conftest import gateway_settings, serve_gateway
from tests.email.test_batch import TASKS
from tests.fakes import FakeEngine
from tests.sse import stream_events


async def wait_until(predicate: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


async def test_each_turn_carries_its_conversation_id_for_the_router(
    fake_engine: FakeEngine,
) -> None:
    fake_engine.state.replies.append("כותרת קצרה")
    settings = gateway_settings(fake_engine.url, chat_titles=True)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        for text in ("שלום", "ומה עוד?"):
            body = {"messages": [{"role": "user", "content": text}], "session_id": "chat_aff_0001"}
            _response, events = await stream_events(client, body)
            assert events[-1]["type"] == "done"
        assert await wait_until(lambda: len(fake_engine.state.requests) >= 3)
    # Two turns and the title (twice when the second turn starts before the first title is
    # stored): all keyed on the conversation, so all land on one replica.
    headers = fake_engine.state.session_headers
    assert len(headers) >= 3
    assert set(headers) == {"chat_aff_0001"}


async def test_titles_go_at_background_priority_and_never_hold_more_than_the_cap(
    fake_engine: FakeEngine,
) -> None:
    fake_engine.state.replies.append("כותרת")
    fake_engine.state.reply_delay = 0.3
    settings = gateway_settings(
        fake_engine.url, chat_titles=True, background_priority=10, background_slots=2
    )
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        # Eight new conversations at once: eight titles want the engine together.
        bodies = [
            {"messages": [{"role": "user", "content": f"שאלה מספר {i}"}],
             "session_id": f"chat_burst_{i:04d}"}
            for i in range(8)
        ]  # fmt: skip
        results = await asyncio.gather(*(stream_events(client, b) for b in bodies))
        assert all(events[-1]["type"] == "done" for _r, events in results)

        def titles() -> list[dict[str, object]]:
            return [r for r in fake_engine.state.requests if not r["stream"]]

        assert await wait_until(lambda: len(titles()) == 8 and not fake_engine.state._replying)
    assert fake_engine.state.peak_replies == 2
    assert all(r["priority"] == 10 for r in titles())
    # People's turns keep the engine's default priority.
    assert all("priority" not in r for r in fake_engine.state.requests if r["stream"])


async def test_without_priority_scheduling_no_priority_field_is_sent(
    fake_engine: FakeEngine,
) -> None:
    fake_engine.state.replies.append("כותרת")
    settings = gateway_settings(fake_engine.url, chat_titles=True)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as client:
        body = {"messages": [{"role": "user", "content": "שלום"}], "session_id": "chat_nopri_001"}
        await stream_events(client, body)
        assert await wait_until(lambda: len(fake_engine.state.requests) == 2)
    # FCFS vLLM answers 400 to a request with a priority: only send it when asked to.
    assert all("priority" not in r for r in fake_engine.state.requests)


async def test_batch_email_goes_at_background_priority_under_the_set_cap(
    tmp_path: Path, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = deque([orjson.dumps(TASKS).decode()])
    fake_engine.state.reply_delay = 0.1
    emails = [{"id": f"e{i}", "email_content": f"דנה, משימה {i}"} for i in range(6)]
    source = tmp_path / "many.json"
    source.write_bytes(orjson.dumps(emails))
    settings = gateway_settings(fake_engine.url, background_priority=10, background_slots=2)
    options = BatchOptions(
        operation=Operation.EXTRACT, out=tmp_path / "out.jsonl", concurrency=4, progress=False
    )
    await run_batch_with_engine(settings, [source], options)
    assert fake_engine.state.peak_replies == 2
    assert len(fake_engine.state.requests) >= 6
    assert all(r["priority"] == 10 for r in fake_engine.state.requests)
