"""``POST /v1/chat/completions`` request: the parameters this server honours, and no others.

Unknown parameters are refused (400), not dropped: a client that sends ``n=3``, ``audio`` or
``prediction`` and silently gets something else would be worse off than with an error. The
set below is what both engines the gateway fronts (vLLM and llama-server) implement:

================================  ====================================================
accepted                          note
================================  ====================================================
model, messages                   ``model``: the served id or ``default``
stream, stream_options            ``include_usage`` is always requested upstream
max_tokens, max_completion_tokens capped by ``LLM_API_MAX_TOKENS_CAP``
temperature, top_p, seed, stop
presence_penalty, frequency_penalty
logit_bias, logprobs, top_logprobs
n                                 1 only (llama-server generates one choice)
response_format                   text, json_object, json_schema (grammar-constrained)
tools, tool_choice,               passed through; the engine decides, and its 4xx
parallel_tool_calls               refusal reaches the client as ``engine_rejected``
user                              accepted, not forwarded
================================  ====================================================

Message content is a string or a list of ``text`` parts; images and audio are refused
because the served models here take text only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "developer", "user", "assistant", "tool"]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatCompletionMessage(BaseModel):
    # Assistant turns echoed back by SDKs carry fields such as ``refusal`` or ``annotations``:
    # harmless, kept and forwarded as they came.
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for part in value:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise ValueError(
                        f"content parts of type {kind!r} are not supported; "
                        "the served model takes text only"
                    )
        return value

    @model_validator(mode="after")
    def _has_content(self) -> ChatCompletionMessage:
        if self.content is None and not self.tool_calls:
            raise ValueError("content is required unless the message has tool_calls")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = None


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    # ``schema`` shadows a BaseModel attribute; the alias keeps the wire name.
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs json_schema")
        return self


Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    messages: list[ChatCompletionMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: Literal[1] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("stop takes at most 4 sequences")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


ACCEPTED_PARAMETERS = frozenset(ChatCompletionRequest.model_fields)
