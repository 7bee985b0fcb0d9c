"""The email endpoints on the real llama-server with the bundled (weak, base) model.

What is tested is what code guarantees whatever the model says: 200 with schema-valid
output, header fields taken from the headers, limits kept, answers in bounded time.

The base model does not end an answer on its own: under the grammar it fills every string
and the task list to their bounds. So the time of a call is set by the schema's bounds
(sized to the email, schemas.py), and ``max_tokens`` must hold the longest answer they
admit, or the answer is cut and asked for again (before the bounds were sized, the English
extraction wrote 768 + 1430 tokens and took 265 s; docs/email-benchmarks.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from llm_api.email.parsing import parse_email
from llm_api.email.schemas import (
    ModelSummary,
    ModelTitle,
    SummaryPublic,
    TaskPublic,
    TitlePublic,
    answer_tokens,
    json_schema,
    task_list_schema,
)
from llm_api.email.service import task_room
from llm_api.engine.client import EngineClient, EngineLimits
from tests.conftest import gateway_settings, serve_gateway
from tests.email import samples

# Each call on 2 cores: the longest (English extraction, ~380 tokens) takes ~15 s on a quiet
# machine and 35 s at load average 5 (docs/email-benchmarks.md).
SECONDS_PER_CALL = 60
pytestmark = [pytest.mark.engine, pytest.mark.timeout(SECONDS_PER_CALL * 3)]

EMAILS = {
    "hebrew": (samples.PASTED_HEBREW, "amit@x.co.il", "2024-01-20"),
    "english": (samples.PASTED_ENGLISH, "Sarah Cohen <sarah@example.com>", "2024-01-21"),
}  # fmt: skip


@pytest.fixture
async def real_client(real_engine_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # The engine's slots hold 4096 tokens; an extraction's max_tokens (its longest answer,
    # 1490 tokens for the English email) fits the cap, as in production.
    settings = gateway_settings(real_engine_url, max_model_len=4096, max_tokens_cap=2048)
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=SECONDS_PER_CALL * 3) as client,
    ):
        yield client


@pytest.mark.parametrize("name", list(EMAILS))
async def test_extract_is_schema_valid(real_client: httpx.AsyncClient, name: str) -> None:
    content, sender, sent = EMAILS[name]
    started = time.monotonic()
    response = await real_client.post("/api/tasks/extract", json={"email_content": content})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    tasks = [TaskPublic.model_validate(item) for item in response.json()]
    for task in tasks:
        assert task.sender == sender
        assert task.sending_date == sent
        assert task.assigned_to.strip()
        assert task.title.strip()
        assert task.description.strip()
        assert task.due_date is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", task.due_date)
        if task.evidence is not None:
            assert " ".join(task.evidence.split()) in " ".join(content.split())
    assert elapsed < SECONDS_PER_CALL


@pytest.mark.parametrize("name", list(EMAILS))
async def test_summarize_is_schema_valid(real_client: httpx.AsyncClient, name: str) -> None:
    content, sender, sent = EMAILS[name]
    started = time.monotonic()
    response = await real_client.post(
        "/api/summarization/summarize", json={"email_content": content, "length": 80}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    summary = SummaryPublic.model_validate(response.json())
    assert summary.sender == sender
    assert summary.sending_date == sent
    assert summary.title.strip()
    assert 0 < len(summary.summary) <= 80
    assert elapsed < SECONDS_PER_CALL


@pytest.mark.parametrize(
    "message", ["אני רוצה לתכנן טיול משפחתי לצפון בפסח", "How do I sort a list in Python?"]
)
async def test_title_is_schema_valid(real_client: httpx.AsyncClient, message: str) -> None:
    started = time.monotonic()
    response = await real_client.post("/api/title/generate", json={"user_message": message})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    title = TitlePublic.model_validate(response.json()).title
    assert 1 <= len(title.split()) <= 6
    assert elapsed < SECONDS_PER_CALL


async def test_max_tokens_holds_the_longest_answer_in_the_engines_tokens(
    real_engine_url: str,
) -> None:
    """The ceiling is checked against the engine's own tokenizer, at its worst: a digit or a
    repeated Hebrew letter is one token a character, and the answer is pretty-printed."""
    schemas = [
        *(task_list_schema(*task_room(parse_email(c).model_text)) for c, _, _ in EMAILS.values()),
        json_schema(ModelSummary, summary=160),
        json_schema(ModelTitle),
    ]
    async with EngineClient(EngineLimits(base_url=real_engine_url)) as engine:
        for schema in schemas:
            for filler in ("7", "א"):
                answer = samples.longest_answer(schema, filler)
                text = orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode()
                assert len(await engine.tokenize(text)) <= answer_tokens(schema)
