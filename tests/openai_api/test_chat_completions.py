"""``/v1/chat/completions`` and ``/v1/models`` on the fake engine, with the official SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine

HEBREW = "שלום! מה שלומך היום?"


@pytest.fixture
async def v1(fake_engine: FakeEngine, tmp_path: Path) -> AsyncIterator[str]:
    async with serve_gateway(gateway_settings(fake_engine.url, data_dir=tmp_path)) as url:
        yield url


@pytest.fixture
async def sdk(v1: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=v1 + "/v1", api_key="unused", max_retries=0) as client:
        yield client


async def test_plain_completion_with_sdk(sdk: openai.AsyncOpenAI, fake_engine: FakeEngine) -> None:
    fake_engine.state.replies.append("שלום עולם")
    answer = await sdk.chat.completions.create(
        model="default", messages=[{"role": "user", "content": HEBREW}]
    )
    assert answer.choices[0].message.content == "שלום עולם"
    assert answer.usage is not None
    assert answer.usage.total_tokens == 15
    sent = fake_engine.state.requests[0]
    assert sent["model"] == "fake-model"  # the alias is resolved to the served id
    assert sent["messages"] == [{"role": "user", "content": HEBREW}]
    assert sent["stream"] is False
    # The embedded engine's default when the client sets none (vLLM: LLM_API_DEFAULT_MAX_TOKENS)
    assert sent["max_tokens"] == 512
    # … and its anti-loop sampling (tests/chat/test_stream.py checks both engine kinds).
    assert sent["dry_multiplier"] == 0.8


async def test_served_model_id_works_too(sdk: openai.AsyncOpenAI, fake_engine: FakeEngine) -> None:
    answer = await sdk.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert answer.choices[0].finish_reason == "stop"
    assert fake_engine.state.requests[0]["max_tokens"] == 5


async def test_streaming_with_sdk_ends_with_usage(
    sdk: openai.AsyncOpenAI, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["שלום", " עולם", " 👋"]
    stream = await sdk.chat.completions.create(
        model="default", messages=[{"role": "user", "content": HEBREW}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "שלום עולם 👋"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    sent = fake_engine.state.requests[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_raw_stream_is_sse_ending_with_done_and_unescaped_hebrew(
    v1: str, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["שלום"]
    body = {"model": "default", "messages": [{"role": "user", "content": HEBREW}], "stream": True}
    async with (
        httpx.AsyncClient(base_url=v1) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        raw = await response.aread()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    events = [line for line in raw.decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    assert "שלום".encode() in raw
    assert b"\\u05" not in raw
    usage = orjson.loads(events[-2][6:])
    assert usage["usage"]["prompt_tokens"] == 10


async def test_models_lists_the_served_model(sdk: openai.AsyncOpenAI) -> None:
    page = await sdk.models.list()
    assert [m.id for m in page.data] == ["fake-model"]
    assert page.data[0].object == "model"


async def test_models_gives_the_context_one_request_can_use(v1: str) -> None:
    # llama-server's /v1/models names the model's training length (32,768) and, in meta.n_ctx,
    # what one slot holds (-c split across -np): a request is refused above the latter.
    async with httpx.AsyncClient(base_url=v1) as http:
        listed = (await http.get("/v1/models")).json()
    assert listed["data"][0]["max_model_len"] == 4096


async def test_tools_on_an_engine_without_tool_support_is_400_not_retryable(
    v1: str, fake_engine: FakeEngine
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with openai.AsyncOpenAI(base_url=v1 + "/v1", api_key="unused", max_retries=3) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(
                model="default",
                messages=[{"role": "user", "content": "מה מזג האוויר?"}],
                tools=tools,  # type: ignore[arg-type]  # a plain dict, as a caller writes it
            )
    assert caught.value.code == "engine_rejected"
    assert caught.value.param == "tools"
    assert "without 'tools'" in caught.value.message
    assert fake_engine.state.requests == []  # refused once, never retried, engine not called


async def test_unknown_model_is_404_in_openai_envelope(
    sdk: openai.AsyncOpenAI, v1: str, fake_engine: FakeEngine
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "model_not_found"
    async with httpx.AsyncClient(base_url=v1) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == "model"
    assert "fake-model" in error["message"]  # names what is served, not what was asked
    assert "gpt-4o" not in error["message"]
    assert fake_engine.state.requests == []


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"n": 2}, "n", "invalid_request_error"),
        ({"audio": {"voice": "alloy"}}, "audio", "unsupported_parameter"),
        (
            {"prediction": {"type": "content", "content": "x"}},
            "prediction",
            "unsupported_parameter",
        ),
        ({"temperature": 3}, "temperature", "invalid_request_error"),
        ({"max_tokens": 100_000}, "max_tokens", "invalid_request_error"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", "invalid_request_error"),
        ({"stop": ["a", "b", "c", "d", "e"]}, None, "invalid_request_error"),
        ({"response_format": {"type": "json_schema"}}, "response_format", "invalid_request_error"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_request_error"),
        ({"stream_options": {"include_usage": True}}, None, "invalid_request_error"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages.0.content",
            "invalid_request_error",
        ),
        ({"messages": []}, "messages", "invalid_request_error"),
    ],
)
async def test_parameters_the_engine_cannot_honour_are_400_before_the_engine(
    v1: str, fake_engine: FakeEngine, extra: dict[str, object], param: str | None, code: str
) -> None:
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}], **extra}
    async with httpx.AsyncClient(base_url=v1) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    if param is not None:
        assert error["param"] is not None
        assert error["param"].startswith(param)
    assert fake_engine.state.requests == []


async def test_malformed_json_is_400(v1: str, fake_engine: FakeEngine) -> None:
    async with httpx.AsyncClient(base_url=v1) as http:
        response = await http.post(
            "/v1/chat/completions",
            content=b'{"model": ',
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


async def test_response_format_and_tools_pass_through(v1: str, fake_engine: FakeEngine) -> None:
    fake_engine.state.supports_tools = True  # llama-server with --jinja and a tool template
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    tools = [
        {
            "type": "function",
            "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    body = {
        "model": "default",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": True},
        },
        "tools": tools,
        "tool_choice": "auto",
        "seed": 7,
        "user": "someone",
    }
    async with httpx.AsyncClient(base_url=v1) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    sent = fake_engine.state.requests[0]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": schema, "strict": True},
    }
    assert sent["tools"] == tools
    assert sent["tool_choice"] == "auto"
    assert sent["seed"] == 7
    assert "user" not in sent


async def test_engine_rejection_before_first_byte_is_its_status(
    sdk: openai.AsyncOpenAI, fake_engine: FakeEngine
) -> None:
    fake_engine.state.fail_status = 400
    fake_engine.state.fail_message = "tools param requires --jinja flag"
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert "--jinja" in caught.value.message
    assert caught.value.code == "engine_rejected"


async def test_engine_down_is_503(tmp_path: Path) -> None:
    from tests.conftest import free_port

    settings = gateway_settings(f"http://127.0.0.1:{free_port()}", data_dir=tmp_path)
    async with (
        serve_gateway(settings) as url,
        openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client,
    ):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.status_code == 503


async def test_mid_stream_engine_error_is_one_error_event_then_done(
    sdk: openai.AsyncOpenAI, v1: str, fake_engine: FakeEngine
) -> None:
    fake_engine.state.error_after = 2
    stream = await sdk.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    seen: list[object] = []

    async def drain() -> None:
        async for chunk in stream:
            seen.append(chunk)

    with pytest.raises(openai.APIError) as caught:
        await drain()
    assert "mid-stream failure" in caught.value.message
    assert len(seen) == 3  # the role chunk and two content chunks got through first
    async with (
        httpx.AsyncClient(base_url=v1) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "default", "messages": [{"role": "user", "content": "x"}], "stream": 1},
        ) as response,
    ):
        raw = (await response.aread()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert orjson.loads(events[-2][6:])["error"]["type"] == "engine_bad_response"
    assert events[-1] == "data: [DONE]"


async def test_client_disconnect_closes_the_engine_request(
    v1: str, fake_engine: FakeEngine
) -> None:
    state = fake_engine.state
    state.chunks = [f"t{i} " for i in range(400)]
    state.chunk_delay = 0.05
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with (
        httpx.AsyncClient(base_url=v1) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data:") and "t1 " in line:
                break
    gone = time.monotonic()
    while state.open_streams() and time.monotonic() - gone < 2:  # noqa: ASYNC110 - another server's state
        await asyncio.sleep(0.02)
    record = state.streams[0]
    assert record.closed_at is not None, "the engine request stayed open"
    assert record.closed_at - gone < 1.0
    assert not record.completed
    async with httpx.AsyncClient(base_url=v1) as http:
        text = (await http.get("/metrics")).text
    assert 'llm_api_upstream_aborts_total{route="/v1/chat/completions"}' in text
    assert 'llm_api_client_disconnects_total{route="/v1/chat/completions"}' in text


async def test_done_inside_generated_text_does_not_end_the_stream(
    sdk: openai.AsyncOpenAI, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["שלום ", "data: [DONE]", "\n\ndata: [DONE]\n\n", " סוף"]
    stream = await sdk.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "שלום data: [DONE]\n\ndata: [DONE]\n\n סוף"
    assert chunks[-1].usage is not None
