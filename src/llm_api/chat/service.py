"""Chat replies: build the prompt, open the engine stream, hand back domain events."""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from llm_api.chat.activity import SessionActivity
from llm_api.chat.language import resolve_language
from llm_api.chat.prompts import SYSTEM_PROMPTS
from llm_api.chat.schemas import ChatRequest, Language
from llm_api.engine.client import EngineClient, JsonObject
from llm_api.engine.models import ModelCatalog
from llm_api.errors import EngineBadResponse, InvalidRequest


def new_session_id() -> str:
    return "chat_" + secrets.token_urlsafe(16)


@dataclass(slots=True)
class ReplyOutcome:
    """Filled in while the reply streams; read once it has ended."""

    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ChatReply:
    session_id: str
    language: Language
    deltas: AsyncIterator[str]
    outcome: ReplyOutcome


@dataclass(frozen=True, slots=True)
class ChatLimits:
    default_max_tokens: int
    max_tokens_cap: int


class ChatService:
    def __init__(
        self,
        engine: EngineClient,
        models: ModelCatalog,
        limits: ChatLimits,
        activity: SessionActivity,
    ) -> None:
        self._engine = engine
        self._models = models
        self._limits = limits
        self._activity = activity

    async def start_reply(self, request: ChatRequest) -> ChatReply:
        """Open the engine stream and wait for its first chunk.

        Everything that can be refused (bad limits, engine down, engine rejecting the
        prompt) fails here, before the caller has sent a byte to its client.
        """
        max_tokens = request.max_tokens or self._limits.default_max_tokens
        if max_tokens > self._limits.max_tokens_cap:
            raise InvalidRequest(
                f"max_tokens must be at most {self._limits.max_tokens_cap}", param="max_tokens"
            )
        session_id = request.session_id or new_session_id()
        language = resolve_language(request.language, request.messages[-1].content)
        payload: dict[str, Any] = {
            "model": await self._models.model_id(),
            "messages": self._prompt(request, language),
            "max_tokens": max_tokens,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature

        chunks = self._engine.stream_chat(payload)
        outcome = ReplyOutcome()
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            raise EngineBadResponse("the inference engine ended the stream at once") from None
        except BaseException:
            await chunks.aclose()
            raise
        self._activity.touch(session_id)
        return ChatReply(session_id, language, _deltas(first, chunks, outcome), outcome)

    @staticmethod
    def _prompt(request: ChatRequest, language: Language) -> list[dict[str, str]]:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if messages[0]["role"] != "system":
            # A client's own system message is respected; otherwise ours, fixed per language.
            messages.insert(0, {"role": "system", "content": SYSTEM_PROMPTS[language]})
        return messages


async def _deltas(
    first: JsonObject, rest: AsyncGenerator[JsonObject, None], outcome: ReplyOutcome
) -> AsyncIterator[str]:
    async with aclosing(rest):
        text = _absorb(first, outcome)
        if text:
            yield text
        async for chunk in rest:
            text = _absorb(chunk, outcome)
            if text:
                yield text


def _absorb(chunk: JsonObject, outcome: ReplyOutcome) -> str:
    """Return the chunk's text, recording finish reason and usage on the way."""
    usage = chunk.get("usage")
    if usage:
        outcome.usage = usage
    choices = chunk.get("choices")
    if not choices:
        return ""
    choice = choices[0]
    reason = choice.get("finish_reason")
    if reason:
        outcome.finish_reason = reason
    delta = choice.get("delta")
    if delta:
        content = delta.get("content")
        if content:
            return str(content)
    return ""
