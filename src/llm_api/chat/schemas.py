"""Request and event shapes of ``POST /api/chat/stream`` (the seed's contract, kept exact)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

SESSION_ID_PATTERN = r"^chat_[A-Za-z0-9_-]{8,64}$"


class Language(StrEnum):
    HEBREW = "hebrew"
    ENGLISH = "english"
    AUTO = "auto"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, StringConstraints(min_length=1)]

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must not be empty or only whitespace")
        return value


class ChatRequest(BaseModel):
    # Unknown fields are ignored, as the seed's web client sends a few of its own.
    model_config = ConfigDict(extra="ignore")

    messages: list[ChatMessage] = Field(min_length=1)
    session_id: Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)] | None = None
    language: Language = Language.AUTO
    stream: bool = True
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        return messages


# --- stored conversations (``/api/sessions``) -------------------------------------------------
MessageStatus = Literal["streaming", "complete", "interrupted", "error"]


class SessionSummary(BaseModel):
    session_id: str
    title: str | None
    language: str
    created_at: datetime
    updated_at: datetime
    message_count: int


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    next: str | None


class ChatAnswer(BaseModel):
    """The whole reply at once, for ``"stream": false``."""

    type: Literal["message"] = "message"
    content: str
    session_id: str
    finish_reason: str | None
    truncated_messages: int = Field(
        default=0, ge=0, description="Oldest messages left out to fit the context window."
    )


class MessagePublic(BaseModel):
    role: str
    content: str
    status: MessageStatus
    created_at: datetime


class SessionPublic(SessionSummary):
    messages: list[MessagePublic]


class SessionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
