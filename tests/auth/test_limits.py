"""Per-key requests/minute and concurrent generations (429), the engine gate (503), Redis."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest
from redis.asyncio import Redis

from llm_api.auth.limits import KeyLimits, RedisCounters, SharedEngineGate
from llm_api.errors import Overloaded, RateLimited
from tests.auth.conftest import bearer, make_key, secured_settings
from tests.conftest import gateway_settings, serve_gateway, uvicorn_workers
from tests.fakes import FakeEngine

REDIS_URL = "redis://127.0.0.1:6379/0"
CHAT = {"messages": [{"role": "user", "content": "ספר לי סיפור קצר"}]}


async def _away_from_minute_edge(seconds_needed: float) -> None:
    # Windows are calendar minutes; a test that straddled one would see two budgets.
    into = time.time() % 60
    if into > 60 - seconds_needed:
        await asyncio.sleep(60 - into + 0.2)


async def test_requests_per_minute_gives_429_with_retry_after(fake_engine: FakeEngine) -> None:
    settings = secured_settings(fake_engine.url)
    key = await make_key(settings, "alice", "chat", rpm=5)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        await _away_from_minute_edge(5)
        statuses = [
            (await http.get("/api/sessions", headers=bearer(key))).status_code for _ in range(7)
        ]
        assert statuses == [200] * 5 + [429] * 2
        over = await http.get("/api/sessions", headers=bearer(key))
        assert over.json()["error"]["type"] == "rate_limit_exceeded"
        assert 1 <= int(over.headers["retry-after"]) <= 61
        # Another key has its own budget.
        other = await make_key(settings, "bob", "chat", rpm=5)
        assert (await http.get("/api/sessions", headers=bearer(other))).status_code == 200


async def test_concurrent_streams_per_key(fake_engine: FakeEngine) -> None:
    fake_engine.state.chunk_delay = 0.15
    settings = secured_settings(fake_engine.url)
    key = await make_key(settings, "alice", "chat", max_streams=1)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        async with http.stream("POST", "/api/chat/stream", json=CHAT, headers=bearer(key)) as r:
            assert r.status_code == 200
            second = await http.post("/api/chat/stream", json=CHAT, headers=bearer(key))
            assert second.status_code == 429
            assert second.headers["retry-after"] == "1"
            v1 = {"model": "default", **CHAT}
            third = await http.post("/v1/chat/completions", json=v1, headers=bearer(key))
            assert third.status_code == 429
            # Reading is not generating: the stream does not block the key's other routes.
            assert (await http.get("/api/sessions", headers=bearer(key))).status_code == 200
            await r.aread()
        # The slot is released once the stream's last event is out.
        after = await http.post("/api/chat/stream", json=CHAT, headers=bearer(key))
        assert after.status_code == 200
    assert fake_engine.state.open_streams() == 0
    assert len(fake_engine.state.streams) == 2


async def test_engine_gate_answers_503_fast_when_full(fake_engine: FakeEngine) -> None:
    fake_engine.state.chunk_delay = 0.2
    settings = gateway_settings(fake_engine.url, max_concurrent_requests=1, max_queue=1)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        async with http.stream("POST", "/api/chat/stream", json=CHAT) as first:
            assert first.status_code == 200
            queued = asyncio.create_task(http.post("/api/chat/stream", json=CHAT))
            await asyncio.sleep(0.2)
            started = time.perf_counter()
            refused = await http.post("/api/chat/stream", json=CHAT)
            elapsed = time.perf_counter() - started
            assert refused.status_code == 503
            assert refused.json()["error"]["type"] == "server_overloaded"
            assert refused.headers["retry-after"] == "1"
            assert elapsed < 0.1, f"503 took {elapsed * 1000:.0f} ms"
            assert not queued.done()
            await first.aread()
        # The queued request got the slot when the first stream ended.
        assert (await queued).status_code == 200
    assert len(fake_engine.state.streams) == 2


async def test_redis_counters_share_the_window_and_slots() -> None:
    name = "t-" + secrets.token_hex(4)
    first = KeyLimits(RedisCounters(REDIS_URL), stream_ttl=60)
    second = KeyLimits(RedisCounters(REDIS_URL), stream_ttl=60)
    try:
        await _away_from_minute_edge(2)
        for limits in (first, second, first):
            await limits.check_rate(name, 3)
        with pytest.raises(RateLimited):
            await second.check_rate(name, 3)
        async with first.stream(name, 1):
            with pytest.raises(RateLimited):
                async with second.stream(name, 1):
                    pass
        async with second.stream(name, 1):
            pass
    finally:
        await first.counters.close()
        await second.counters.close()


async def test_two_workers_share_the_limit_through_redis(fake_engine: FakeEngine) -> None:
    rpm = 200
    settings = secured_settings(fake_engine.url)
    name = "w-" + secrets.token_hex(4)
    key = await make_key(settings, name, "chat", rpm=rpm)
    env = {
        "LLM_API_ENGINE_URL": fake_engine.url,
        "LLM_API_DATA_DIR": str(settings.data_dir),
        "LLM_API_AUTH": "required",
        "LLM_API_REDIS_URL": REDIS_URL,
    }
    async with uvicorn_workers(env) as url:
        await _away_from_minute_edge(20)
        clients = [httpx.AsyncClient(base_url=url, timeout=30) for _ in range(8)]
        try:

            async def hit(client: httpx.AsyncClient, n: int) -> list[int]:
                return [
                    (await client.get("/api/sessions", headers=bearer(key))).status_code
                    for _ in range(n)
                ]

            results = await asyncio.gather(*(hit(c, 40) for c in clients))
        finally:
            for client in clients:
                await client.aclose()
    statuses = [s for batch in results for s in batch]
    admitted = statuses.count(200)
    assert statuses.count(429) == len(statuses) - admitted
    assert abs(admitted - rpm) <= rpm * 0.02, admitted
    redis = Redis.from_url(REDIS_URL)
    try:
        assert await redis.keys(f"llm_api:rpm:{name}:*")
    finally:
        await redis.aclose()


async def test_too_many_messages_or_one_too_long_is_refused_before_the_engine(
    fake_engine: FakeEngine,
) -> None:
    settings = gateway_settings(fake_engine.url, max_messages=4, max_message_chars=50)
    long_hebrew = "שלום עולם " * 6  # 60 characters, 110 bytes
    many = [{"role": "user", "content": "היי"}] * 5
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        for messages, param in (
            (many, "messages"),
            ([{"role": "user", "content": long_hebrew}], "messages.0.content"),
        ):
            response = await http.post("/api/chat/stream", json={"messages": messages})
            assert response.status_code == 422
            assert response.json()["error"]["param"] == param
            v1 = {"model": "default", "messages": messages}
            response = await http.post("/v1/chat/completions", json=v1)
            assert response.status_code == 400
            assert response.json()["error"]["param"] == param
        parts = [{"type": "text", "text": long_hebrew}]
        v1 = {"model": "default", "messages": [{"role": "user", "content": parts}]}
        assert (await http.post("/v1/chat/completions", json=v1)).status_code == 400
        assert fake_engine.state.requests == []
        ok = {"messages": [{"role": "user", "content": "שלום עולם"}]}
        assert (await http.post("/api/chat/stream", json=ok)).status_code == 200


async def test_engine_gate_shared_through_redis_across_workers() -> None:
    namespace = "test-" + secrets.token_hex(4)
    workers = [RedisCounters(REDIS_URL, namespace) for _ in range(3)]
    gates = [SharedEngineGate(c, 1, 1, 5.0, ttl=60, poll=0.01) for c in workers]
    try:
        release_first = asyncio.Event()
        holding = asyncio.Event()

        async def first() -> None:
            async with gates[0].slot():
                holding.set()
                await release_first.wait()

        async def queued() -> float:
            async with gates[1].slot():
                return time.perf_counter()

        task_first = asyncio.create_task(first())
        await holding.wait()
        task_queued = asyncio.create_task(queued())
        await asyncio.sleep(0.1)
        assert not task_queued.done()
        started = time.perf_counter()
        with pytest.raises(Overloaded):
            async with gates[2].slot():
                pass
        assert time.perf_counter() - started < 0.1
        released = time.perf_counter()
        release_first.set()
        await task_first
        assert await task_queued >= released
        async with gates[2].slot():  # free again, and counters back at zero
            pass
        redis = workers[0].redis
        for name in ("running", "waiting"):
            assert int(await redis.get(f"{namespace}:slots:engine:{name}") or 0) == 0
    finally:
        for counters in workers:
            await counters.close()
