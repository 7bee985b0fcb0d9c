"""Streaming chat through the gateway on the real llama-server with the bundled model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from tests.conftest import gateway_settings, serve_gateway
from tests.sse import stream_events

pytestmark = pytest.mark.engine


@pytest.fixture
async def real_client(real_engine_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = gateway_settings(real_engine_url, max_model_len=4096, max_tokens_cap=1024)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=120) as c:
        yield c


@pytest.mark.parametrize("prompt", ["שלום! תוכל לספר לי בדיחה?", "Hello! Can you tell me a joke?"])
async def test_chat_streams_from_the_real_engine(
    real_client: httpx.AsyncClient, prompt: str
) -> None:
    response, events = await stream_events(
        real_client,
        {"messages": [{"role": "user", "content": prompt}], "stream": True, "max_tokens": 24},
    )
    assert response.status_code == 200
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "done"
    assert kinds.count("done") == 1
    assert "error" not in kinds
    assert kinds.count("content") >= 1
    text = "".join(e["content"] for e in events if e["type"] == "content")
    assert text.strip()
    assert events[-1]["session_id"] == response.headers["x-session-id"]
    assert events[-1]["finish_reason"] in {"stop", "length"}


async def test_health_reads_real_llamacpp_metrics(real_client: httpx.AsyncClient) -> None:
    body = (await real_client.get("/api/health")).json()
    assert body["status"] == "healthy"
    assert isinstance(body["vllm_running_requests"], int)
    assert isinstance(body["vllm_waiting_requests"], int)


async def test_disconnect_frees_the_real_engine_slot(
    real_client: httpx.AsyncClient, real_engine_url: str
) -> None:
    body = {"messages": [{"role": "user", "content": "Count from one to a thousand."}],
            "max_tokens": 1000}  # fmt: skip
    async with real_client.stream("POST", "/api/chat/stream", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:") and orjson.loads(line[5:])["type"] == "content":
                break
    gone = time.monotonic()
    async with httpx.AsyncClient(base_url=real_engine_url) as engine:
        while True:
            metrics = (await engine.get("/metrics")).text
            processing = [
                line for line in metrics.splitlines()
                if line.startswith("llamacpp:requests_processing")
            ]  # fmt: skip
            if processing and float(processing[0].split()[-1]) == 0:
                break
            assert time.monotonic() - gone < 1.5, "the engine kept generating after disconnect"
            await asyncio.sleep(0.05)
