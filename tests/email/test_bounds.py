"""Bounds on what the model may write: every schema sent is bounded, ``max_tokens`` holds its
longest answer, and the task list's bounds follow the email."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_api.email.parsing import parse_email
from llm_api.email.schemas import (
    MAX_TASKS,
    TASK_EVIDENCE_CHARS,
    ModelSummary,
    ModelTaskList,
    ModelTitle,
    UnboundedSchema,
    answer_chars,
    answer_tokens,
    json_schema,
    task_list_schema,
)
from llm_api.email.service import task_room
from tests.email import samples


def compact(value: Any) -> str:
    return orjson.dumps(value).decode()


@pytest.mark.parametrize(
    ("schema", "answer_type"),
    [
        (task_list_schema(3, 88), ModelTaskList),
        (task_list_schema(MAX_TASKS, TASK_EVIDENCE_CHARS), ModelTaskList),
        (json_schema(ModelSummary, summary=160), ModelSummary),
        (json_schema(ModelTitle), ModelTitle),
    ],
)
def test_answer_chars_is_the_longest_answer_the_schema_admits(
    schema: dict[str, Any], answer_type: type[Any]
) -> None:
    text = compact(samples.longest_answer(schema))
    answer_type.model_validate_json(text)  # the filled answer is valid: the bound is reached
    assert answer_chars(schema) == len(text)
    # One token a character at least (the real tokenizer's worst case is checked against
    # the engine in tests/integration/test_email_engine.py).
    assert answer_tokens(schema) > len(text)


def test_an_unbounded_schema_is_refused() -> None:
    with pytest.raises(UnboundedSchema):
        answer_chars(json_schema(ModelSummary))  # the summary's bound is set per request
    with pytest.raises(UnboundedSchema):
        answer_chars({"type": "array", "items": {"type": "null"}})
    with pytest.raises(UnboundedSchema):
        answer_chars({"type": "object", "properties": {}, "additionalProperties": True})


def test_task_list_schema_keeps_the_static_bounds_as_ceilings() -> None:
    schema = task_list_schema(50, 10_000)
    tasks = schema["properties"]["tasks"]
    assert tasks["maxItems"] == MAX_TASKS
    (evidence,) = [o for o in tasks["items"]["properties"]["evidence"]["anyOf"] if "maxLength" in o]
    assert evidence["maxLength"] == TASK_EVIDENCE_CHARS
    # Each call builds its own schema: nothing shared is changed.
    assert task_list_schema(2, 40)["properties"]["tasks"]["maxItems"] == 2
    assert json_schema(ModelTaskList)["properties"]["tasks"]["maxItems"] == MAX_TASKS


@pytest.mark.parametrize(
    ("text", "room"),
    [
        # "Hi all," is a greeting (two words); two sentences state work; one spare.
        (parse_email(samples.PASTED_ENGLISH).model_text, (3, 88)),
        (parse_email(samples.PASTED_HEBREW).model_text, (2, 45)),
        ("Dana, send the report.", (2, 22)),
        ("Call Dan", (1, 8)),
        ("", (1, 3)),
        # A hard-wrapped sentence is one sentence, and its quote may span the wrap.
        ("Dana, please send\nthe  updated report\nby Monday.", (2, 47)),
        (" ".join(f"Person {i} does task {i}." for i in range(20)), (MAX_TASKS, 240)),
    ],
)
def test_task_room_follows_the_email(text: str, room: tuple[int, int]) -> None:
    assert task_room(text) == room
