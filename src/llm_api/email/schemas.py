"""Shapes of the email endpoints (the seed's contract) and of what the model must return.

Request and public models are what callers send and get. ``Model*`` classes are what the
model is asked for through ``response_format`` (a JSON schema the engine enforces by
grammar) and what its answer is validated against; length bounds keep the grammar from
letting a weak model ramble until ``max_tokens``.
"""

from __future__ import annotations

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
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=150)]


class ModelTask(BaseModel):
    # Tight bounds: under a grammar, a weak model that loops stops at a bound, not at
    # max_tokens (whose cut answer would be unusable).
    model_config = ConfigDict(extra="forbid")

    assigned_to: Annotated[str, StringConstraints(max_length=60)] | None
    title: Annotated[str, StringConstraints(max_length=100)]
    description: Annotated[str, StringConstraints(max_length=240)]
    due_date: Annotated[str, StringConstraints(max_length=40)] | None
    evidence: Annotated[str, StringConstraints(max_length=240)] | None


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

    title: Annotated[str, StringConstraints(min_length=1, max_length=80)]

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
