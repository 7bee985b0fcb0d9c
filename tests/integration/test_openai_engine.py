"""The OpenAI API on the real llama-server with the bundled model, driven by the official SDK.

The 270M base model's answers are weak: these tests check validity, shape and plumbing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import openai
import orjson
import pytest
from pydantic import BaseModel

from tests.conftest import gateway_settings, serve_gateway

pytestmark = pytest.mark.engine

SERVED = "gemma-3-270m"


@pytest.fixture
async def sdk(real_engine_url: str, tmp_path: Path) -> AsyncIterator[openai.AsyncOpenAI]:
    settings = gateway_settings(
        real_engine_url, max_model_len=4096, max_tokens_cap=1024, data_dir=tmp_path
    )
    async with (
        serve_gateway(settings) as url,
        openai.AsyncOpenAI(
            base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120
        ) as client,
    ):
        yield client


async def test_models_and_plain_hebrew_completion(sdk: openai.AsyncOpenAI) -> None:
    models = await sdk.models.list()
    assert [m.id for m in models.data] == [SERVED]
    for model in ("default", SERVED):
        answer = await sdk.chat.completions.create(
            model=model,
            messages=[
                {"role": "system", "content": "ענה בעברית."},
                {"role": "user", "content": "מהי בירת ישראל?"},
            ],
            max_tokens=16,
            temperature=0,
        )
        assert answer.model == SERVED
        choice = answer.choices[0]
        assert choice.finish_reason in {"stop", "length"}
        assert isinstance(choice.message.content, str)
        assert choice.message.content.strip()
        assert answer.usage is not None
        assert answer.usage.prompt_tokens > 5
        assert 0 < answer.usage.completion_tokens <= 16


async def test_streaming_ends_with_usage_chunk(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Say hello in Hebrew: שלום"}],
        max_tokens=12,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None
    assert 0 < chunks[-1].usage.completion_tokens <= 12
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] in {"stop", "length"}


class Sentiment(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    confident: bool


async def test_structured_output_parses_into_pydantic_model(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.parse(
        model="default",
        messages=[
            {"role": "system", "content": "Classify the sentiment of the user's message."},
            {"role": "user", "content": "אני מאוד שמח היום, הכל מצוין!"},
        ],
        response_format=Sentiment,
        max_tokens=64,
        temperature=0,
    )
    message = completion.choices[0].message
    assert isinstance(message.parsed, Sentiment)
    assert message.parsed.sentiment in {"positive", "negative", "neutral"}


async def test_json_object_mode_returns_json(sdk: openai.AsyncOpenAI) -> None:
    answer = await sdk.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": 'Return {"ok": true} as JSON.'}],
        response_format={"type": "json_object"},
        max_tokens=48,
        temperature=0,
    )
    content = answer.choices[0].message.content or ""
    if answer.choices[0].finish_reason == "stop":
        assert isinstance(orjson.loads(content), dict)
    else:  # cut by max_tokens: still the start of an object
        assert content.lstrip().startswith("{")


async def test_errors_come_back_as_sdk_exceptions(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "שלום"}]
        )
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        await sdk.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "שלום"}], max_tokens=5000
        )
    assert too_long.value.body is not None
    assert "max_tokens" in str(too_long.value.message)
    with pytest.raises(openai.BadRequestError) as unsupported:
        await sdk.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "שלום"}], n=3
        )
    assert unsupported.value.status_code == 400
