"""The gateway's vLLM path against vLLM's own server (CPU build, Gemma 3 270M base).

The model is weak: these tests check protocol, shapes and timing, not answer quality.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_api.engine.client import EngineClient, EngineLimits
from llm_api.engine.metrics import parse_engine_load
from llm_api.errors import EngineRejected
from tests.integration.vllm.conftest import MAX_MODEL_LEN, VllmServer
from tests.sse import parse_events, stream_events

pytestmark = pytest.mark.vllm

HEBREW = "שלום! תוכל לספר לי בדיחה?"


async def _metrics(url: str) -> str:
    # Async on purpose: the gateway under test runs in this event loop and must keep
    # serving (and noticing disconnects) while the test reads vLLM's metrics.
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url + "/metrics")
    response.raise_for_status()
    return response.text


def _sample_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_hebrew_chat_streams_in_the_seed_format(vllm_gateway: str) -> None:
    async with httpx.AsyncClient(base_url=vllm_gateway, timeout=120) as client:
        response, events = await stream_events(
            client,
            {
                "messages": [{"role": "user", "content": HEBREW}],
                "language": "hebrew",
                "stream": True,
                "max_tokens": 48,
                "temperature": 0.7,
            },
        )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    session_id = response.headers["x-session-id"]
    assert events, "no events"
    *contents, done = events
    assert contents, "vLLM streamed no content"
    assert all(e["type"] == "content" and isinstance(e["content"], str) for e in contents)
    assert "".join(e["content"] for e in contents).strip()
    assert done["type"] == "done"
    assert done["session_id"] == session_id
    assert done["finish_reason"] in {"stop", "length"}


async def test_health_reports_vllm_and_its_labelled_counts(
    vllm_server: VllmServer, vllm_gateway: str
) -> None:
    raw = await _metrics(vllm_server.url)
    # vLLM labels its gauges; the gateway must read them as such.
    assert f'vllm:num_requests_running{{engine="0",model_name="{vllm_server.model}"}}' in raw

    async with httpx.AsyncClient(base_url=vllm_gateway, timeout=120) as client:
        idle = (await client.get("/api/health")).json()
        assert idle["status"] == "healthy"
        assert idle["vllm_healthy"] is True
        for key in ("vllm_running_requests", "vllm_waiting_requests"):
            assert type(idle[key]) is int, key
        assert idle["vllm_waiting_requests"] >= 0

        # While a reply streams, vLLM counts it and the health endpoint says so.
        body = {"messages": [{"role": "user", "content": HEBREW}], "max_tokens": 400}
        async with client.stream("POST", "/api/chat/stream", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break
            busy = (await client.get("/api/health")).json()
    assert busy["vllm_healthy"] is True
    assert busy["vllm_running_requests"] >= 1
    assert type(busy["vllm_waiting_requests"]) is int


async def test_client_disconnect_aborts_the_vllm_request(
    vllm_server: VllmServer, vllm_gateway: str
) -> None:
    before = await _metrics(vllm_server.url)
    finished_before = _sample_sum(before, "vllm:request_success_total")
    generated_before = _sample_sum(before, "vllm:generation_tokens_total")
    body = {
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "max_tokens": 1000,
        # Greedy, so the reply's length does not depend on the draw: in one full run a
        # sampled answer of the small base model was no longer running after 3 events.
        "temperature": 0,
    }
    contents = 0
    async with (
        httpx.AsyncClient(base_url=vllm_gateway, timeout=120) as client,
        client.stream("POST", "/api/chat/stream", json=body) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:") and orjson.loads(line[5:])["type"] == "content":
                contents += 1
                if contents == 3:
                    break
        load = parse_engine_load(await _metrics(vllm_server.url))
        assert load is not None
        assert load.running >= 1
    # Leaving the block closed the connection mid-stream.
    disconnected = time.monotonic()
    running = None
    while time.monotonic() - disconnected < 1.0:
        load = parse_engine_load(await _metrics(vllm_server.url))
        assert load is not None
        running = load.running
        if running == 0:
            break
        await asyncio.sleep(0.05)
    assert running == 0, "vLLM still runs the request 1 s after the client left"
    # It was cut short, not finished: far fewer than the 1000 tokens asked for were made,
    # and they stop growing.
    after = await _metrics(vllm_server.url)
    generated = _sample_sum(after, "vllm:generation_tokens_total") - generated_before
    assert 3 <= generated < 500
    await asyncio.sleep(1.0)
    later = await _metrics(vllm_server.url)
    assert _sample_sum(later, "vllm:generation_tokens_total") - generated_before == generated
    assert _sample_sum(later, "vllm:request_success_total", finished_reason="stop") == (
        _sample_sum(before, "vllm:request_success_total", finished_reason="stop")
    )
    assert _sample_sum(later, "vllm:request_success_total") - finished_before <= 1


async def test_tokenize_and_model_length_from_vllm(vllm_server: VllmServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            vllm_server.url + "/tokenize", json={"model": vllm_server.model, "prompt": "שלום עולם"}
        )
    assert response.status_code == 200, response.text
    raw = response.json()
    assert raw["count"] == len(raw["tokens"]) > 0
    assert raw["max_model_len"] == MAX_MODEL_LEN

    async with EngineClient(EngineLimits(vllm_server.url)) as engine:
        hebrew = await engine.tokenize("שלום עולם")
        mixed = await engine.tokenize("שלום עולם, hello world, " * 20)
        models = await engine.models()
    assert hebrew == raw["tokens"]
    assert all(isinstance(t, int) for t in hebrew)
    assert len(mixed) > len(hebrew)
    assert [(m.id, m.max_model_len) for m in models] == [(vllm_server.model, MAX_MODEL_LEN)]


async def test_context_budget_counts_with_vllms_tokenizer(
    vllm_server: VllmServer, vllm_gateway: str
) -> None:
    # ~5 700 UTF-8 bytes but ~1 000 tokens: over the budget by the byte bound the gateway
    # falls back to when /tokenize fails, well inside it by vLLM's own count.
    long_hebrew = "שלום עולם, " * 300
    budget = MAX_MODEL_LEN - 16
    assert len(long_hebrew.encode()) > budget
    async with EngineClient(EngineLimits(vllm_server.url)) as engine:
        assert len(await engine.tokenize(long_hebrew)) < budget // 2

    async with httpx.AsyncClient(base_url=vllm_gateway, timeout=120) as client:
        response, events = await stream_events(
            client, {"messages": [{"role": "user", "content": long_hebrew}], "max_tokens": 16}
        )
    assert response.status_code == 200, events
    assert events[-1]["type"] == "done"


async def test_vllm_rejection_reaches_the_client_as_4xx(
    vllm_server: VllmServer, vllm_gateway: str
) -> None:
    # About 8 000 tokens: twice the model length vLLM was started with.
    too_long = "שלום עולם, זהו משפט ארוך מאוד. " * 1000
    messages = [{"role": "user", "content": too_long}]
    async with EngineClient(EngineLimits(vllm_server.url)) as engine:
        assert len(await engine.tokenize(too_long)) > MAX_MODEL_LEN
        with pytest.raises(EngineRejected) as rejected:
            await engine.complete_chat(
                {"model": vllm_server.model, "messages": messages, "max_tokens": 16}
            )
    assert rejected.value.upstream_status == 400

    async with httpx.AsyncClient(base_url=vllm_gateway, timeout=120) as client:
        # The OpenAI-compatible relay sends the prompt as given: vLLM refuses it, and its
        # reason reaches the caller, readable, with vLLM's status.
        relayed = [
            await client.post(
                "/v1/chat/completions",
                json={"model": vllm_server.model, "messages": messages, "max_tokens": 16,
                      "stream": stream},
            )
            for stream in (False, True)
        ]  # fmt: skip
        # The seed's chat endpoint counts with vLLM's /tokenize first and refuses the
        # prompt itself: a 4xx all the same, before a byte of stream.
        chat = await client.post("/api/chat/stream", json={"messages": messages, "max_tokens": 16})

    for response in relayed:
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        # vLLM's own words: "This model's maximum context length is 4096 tokens. …"
        assert f"maximum context length is {MAX_MODEL_LEN} tokens" in error["message"]
        assert "\\n" not in error["message"]
    assert chat.status_code == 422, chat.text
    assert chat.headers["content-type"].startswith("application/json")
    assert chat.json()["error"]["type"] == "context_length_exceeded"
    assert not parse_events(chat.text)


async def test_supervisor_gateway_serves_the_vllm_it_launched(vllm_server: VllmServer) -> None:
    """``llm-api serve`` with LLM_API_ENGINE=vllm and LLM_API_VLLM_COMMAND, end to end."""
    output = vllm_server.output()
    assert "starting engine vllm:" in output
    assert "vllm.entrypoints.openai.api_server" in output
    async with httpx.AsyncClient(base_url=vllm_server.gateway_url, timeout=120) as client:
        health = (await client.get("/api/health")).json()
        response, events = await stream_events(
            client, {"messages": [{"role": "user", "content": HEBREW}], "max_tokens": 16}
        )
    assert health["vllm_healthy"] is True
    assert response.status_code == 200
    assert events[-1]["type"] == "done"
    assert any(e["type"] == "content" for e in events)
