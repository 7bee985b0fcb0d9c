"""``/api/health`` and ``/ping`` against the fake engine, for both metric dialects."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine
from tests.sse import stream_events


@pytest.mark.parametrize("flavor", ["llamacpp", "vllm"])
async def test_health_reports_engine_counts(
    client: httpx.AsyncClient, fake_engine: FakeEngine, flavor: str
) -> None:
    fake_engine.state.flavor = flavor  # type: ignore[assignment]
    fake_engine.state.running = 2
    response = await client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["vllm_healthy"] is True
    assert body["vllm_running_requests"] == 2
    assert body["vllm_waiting_requests"] == 0
    assert isinstance(body["active_sessions"], int)
    datetime.fromisoformat(body["timestamp"])


async def test_active_sessions_counts_recent_conversations(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        await stream_events(client, {"messages": [{"role": "user", "content": "hi"}]})
    assert (await client.get("/api/health")).json()["active_sessions"] == 2


async def test_unhealthy_engine_gives_503(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.healthy = False
    response = await client.get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["vllm_healthy"] is False


async def test_ping_never_touches_the_engine(fake_engine: FakeEngine) -> None:
    settings = gateway_settings("http://127.0.0.1:9")  # nothing listens on the discard port
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/ping")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
