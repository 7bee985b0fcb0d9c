"""Shapes of the email endpoints (the seed's contract) and of what the model must return.

Request and public models are what callers send and get. ``Model*`` classes are what the
model is asked for through ``response_format`` (a JSON schema the engine enforces by
grammar) and what its answer is validated against.

Every string and list the model writes is bounded, and :func:`answer_chars` turns a schema
into the longest answer it admits. Under a grammar a weak model does not stop on its own:
it fills each string and the list to their bounds (measured on the bundled 270M model,
docs/email-benchmarks.md), so the bounds, not ``max_tokens``, decide how long an answer
takes, and ``max_tokens`` is sized from them so that a complete answer is never cut.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from llm_api.chat.schemas import Language

MIN_SUMMARY_LENGTH, MAX_SUMMARY_LENGTH = 20, 2000
MAX_TASKS = 8
MAX_TITLE_WORDS = 6


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


class TaskExtractRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email_content: str
    language: Language = Language.AUTO

    _check_content = field_validator("email_content")(_not_blank)


class SummarizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email_content: str
    length: int = Field(default=100, ge=MIN_SUMMARY_LENGTH, le=MAX_SUMMARY_LENGTH)
    language: Language = Language.AUTO

    _check_content = field_validator("email_content")(_not_blank)


class TitleRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_message: str
    language: Language = Language.AUTO

    _check_message = field_validator("user_message")(_not_blank)


# --- public answers -----------------------------------------------------------------------
DateText = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]


class TaskPublic(BaseModel):
    sender: str | None
    sending_date: DateText | None
    assigned_to: str
    title: str
    description: str
    due_date: DateText | None
    evidence: str | None


class SummaryPublic(BaseModel):
    sender: str | None
    sending_date: DateText | None
    title: str
    summary: str


class TitlePublic(BaseModel):
    title: str


# --- what the model returns ---------------------------------------------------------------
# Characters. A name, a short title, one or two sentences, a deadline as the email words it
# ("יום חמישי הבא", "by end of next week"), a quoted sentence. Each character of these is
# paid for in generation time on a CPU engine, where the model writes every one of them.
TASK_OWNER_CHARS, TASK_TITLE_CHARS, TASK_DESCRIPTION_CHARS = 40, 60, 160
TASK_DUE_CHARS, TASK_EVIDENCE_CHARS = 30, 240
TITLE_CHARS = 60  # six words
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=TITLE_CHARS + 20)]


class ModelTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assigned_to: Annotated[str, StringConstraints(max_length=TASK_OWNER_CHARS)] | None
    title: Annotated[str, StringConstraints(max_length=TASK_TITLE_CHARS)]
    description: Annotated[str, StringConstraints(max_length=TASK_DESCRIPTION_CHARS)]
    due_date: Annotated[str, StringConstraints(max_length=TASK_DUE_CHARS)] | None
    evidence: Annotated[str, StringConstraints(max_length=TASK_EVIDENCE_CHARS)] | None


class ModelTaskList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[ModelTask] = Field(max_length=MAX_TASKS)


class ModelSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: ShortText
    summary: Annotated[str, StringConstraints(min_length=1)]

    _check_title = field_validator("title")(_not_blank)
    _check_summary = field_validator("summary")(_not_blank)


def clean_title(title: str) -> str:
    """At most six words, without wrapping quotes or a trailing full stop."""
    words = title.strip().strip("\"'“”«»״׳*#").split()
    return " ".join(words[:MAX_TITLE_WORDS]).rstrip(".,:;!-–— ")


class ModelTitle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(min_length=1, max_length=TITLE_CHARS)]

    @field_validator("title")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not clean_title(value):
            raise ValueError("must contain at least one word")
        return value


def json_schema(model: type[BaseModel], **string_limits: int) -> dict[str, Any]:
    """The model's JSON schema, inlined (no ``$defs``) so every engine's grammar takes it.

    ``string_limits`` overrides ``maxLength`` of top-level string fields (the summary's
    bound depends on the requested length).
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items() if k != "title" or isinstance(v, dict)}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    for name, limit in string_limits.items():
        inlined["properties"][name]["maxLength"] = limit
    return inlined


def task_list_schema(max_tasks: int, evidence_chars: int) -> dict[str, Any]:
    """The task list's schema for one email: at most ``max_tasks`` tasks, evidence quotes of
    at most ``evidence_chars`` (both within the static bounds of :class:`ModelTaskList`)."""
    schema = json_schema(ModelTaskList)
    tasks = schema["properties"]["tasks"]
    tasks["maxItems"] = max(0, min(max_tasks, MAX_TASKS))
    for option in tasks["items"]["properties"]["evidence"]["anyOf"]:
        if option.get("type") == "string":
            option["maxLength"] = max(1, min(evidence_chars, TASK_EVIDENCE_CHARS))
    return schema


class UnboundedSchema(ValueError):
    """A schema admits answers of any length (a string without ``maxLength``, a list
    without ``maxItems``...): a weak model could fill it until ``max_tokens``."""


def answer_chars(schema: dict[str, Any]) -> int:
    """The longest compact JSON text that ``schema`` admits, in characters (escapes inside
    strings, such as ``\\n`` for one character, not counted)."""
    return _longest(schema)[0]


def answer_tokens(schema: dict[str, Any]) -> int:
    """``max_tokens`` that holds the longest answer ``schema`` admits.

    One token a character: Gemma 3's tokenizer writes digits one a token (measured: English
    prose ~4.3 characters a token, Hebrew ~2.1, dates and numbers 1), so no larger ratio
    is safe. Plus two tokens for each place where the engines' JSON grammars allow
    whitespace (a newline and an indent; the model pretty-prints). This is a ceiling, not
    what an answer costs: the time is what the model writes, which the schema bounds.
    """
    chars, gaps = _longest(schema)
    return chars + 2 * gaps


_SCALAR_CHARS = {"null": 4, "boolean": 5}  # null, false


def _longest(schema: dict[str, Any]) -> tuple[int, int]:
    """(characters, whitespace gaps) of the longest answer; a gap follows every value."""
    if "anyOf" in schema:
        return max(_longest(option) for option in schema["anyOf"])
    if "enum" in schema or "const" in schema:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        return max(len(_compact(value)) for value in values), 1
    kind = schema.get("type")
    if kind in _SCALAR_CHARS:
        return _SCALAR_CHARS[kind], 1
    if kind == "string" and "maxLength" in schema:
        return 2 + int(schema["maxLength"]), 1
    if kind == "array" and "maxItems" in schema:
        count = int(schema["maxItems"])
        chars, gaps = _longest(schema["items"])
        return 2 + count * chars + max(count - 1, 0), 2 + count * (gaps + 1)
    if kind == "object" and schema.get("additionalProperties", False) is False:
        chars, gaps = 2, 2
        for name, value in schema.get("properties", {}).items():
            value_chars, value_gaps = _longest(value)
            chars += len(_compact(name)) + 2 + value_chars  # "name": value,
            gaps += 2 + value_gaps
        return chars - (1 if schema.get("properties") else 0), gaps
    raise UnboundedSchema(
        f"a {kind or 'value'} without a length bound (maxLength, maxItems, no extra properties)"
    )


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
