"""``POST /api/chat/stream``: parse, call the chat service, encode its deltas as SSE."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.types import Scope

from llm_api.auth.guard import current_principal
from llm_api.chat.dependencies import (
    ChatServiceDep,
    OwnerDep,
    SettingsDep,
    get_chat_service,
    get_owner,
    get_settings,
)
from llm_api.chat.schemas import ChatAnswer, ChatRequest
from llm_api.chat.service import ChatReply
from llm_api.errors import ApiError
from llm_api.json_body import JsonRoute
from llm_api.observability.context import note_usage
from llm_api.observability.metrics import CONTEXT_TRUNCATIONS, UPSTREAM_ABORTS
from llm_api.responses import json_response, note_api_error
from llm_api.streaming import EventStream

log = logging.getLogger(__name__)
router = APIRouter(tags=["chat"], route_class=JsonRoute)

_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    409: {"description": "Another request is adding to this session"},
    422: {"description": "Invalid request, or the newest message exceeds the context"},
    503: {"description": "The inference engine is unavailable"},
    504: {"description": "The inference engine did not answer in time"},
}


@router.post(
    "/api/chat/stream",
    responses={
        200: {
            "content": {
                "text/event-stream": {},
                "application/json": {"schema": ChatAnswer.model_json_schema()},
            },
            "description": 'Server-sent events; one JSON answer when `"stream": false`',
        },
        **_ERROR_RESPONSES,
    },
)
async def chat_stream(
    body: ChatRequest, chat: ChatServiceDep, settings: SettingsDep, owner: OwnerDep
) -> Response:
    reply = await chat.start_reply(body, owner)
    if reply.truncated_messages:
        CONTEXT_TRUNCATIONS.labels("chat").inc()
    headers = {"X-Session-ID": reply.session_id, "Cache-Control": "no-store"}
    if not body.stream:
        return await _collect(reply, headers)
    return EventStream(_events(reply), ping_seconds=settings.sse_ping_seconds, headers=headers)


def _data(event: dict[str, object]) -> bytes:
    # orjson writes UTF-8 as is, and escapes newlines: one event is one ``data:`` line.
    return b"data: " + orjson.dumps(event) + b"\n\n"


def content_event(text: str) -> bytes:
    """One content event both dialects read: the seed's ``{"type":"content","content"}``
    and an OpenAI chunk's ``choices[0].delta.content`` (what the original web client reads).

    The text is encoded once and spliced in twice: no second ``dumps`` per chunk.
    """
    encoded = orjson.dumps(text)
    return b"".join(
        (
            b'data: {"type":"content","content":',
            encoded,
            b',"choices":[{"index":0,"delta":{"content":',
            encoded,
            b"}}]}\n\n",
        )
    )


async def _events(reply: ChatReply) -> AsyncIterator[bytes]:
    """Content events, then exactly one ``done`` or one ``error`` event."""
    try:
        async for text in reply.deltas:
            yield content_event(text)
        note_usage(reply.outcome.usage)
    except (GeneratorExit, asyncio.CancelledError):
        # The client went away mid-stream; unwinding closes the engine request.
        UPSTREAM_ABORTS.labels("/api/chat/stream").inc()
        raise
    except ApiError as exc:
        note_api_error(exc, in_stream=True)
        log.warning("chat stream failed after start: %s", exc.type)
        # ``error`` is a string: the seed's clients read it as such, and the original web
        # client shows any line that has an ``error``. The body then ends, which that
        # client takes as the end of the stream.
        yield _data(
            {
                "type": "error",
                "error": exc.message,
                "retryable": exc.retryable,
                "code": exc.code,
            }
        )
        return
    finish_reason = reply.outcome.finish_reason
    yield _data(
        {
            "type": "done",
            "session_id": reply.session_id,
            "finish_reason": finish_reason,
            # Always present (0 when nothing was left out), so clients need no default.
            "truncated_messages": reply.truncated_messages,
            # An OpenAI reader finds an empty final delta, as in the last chunk of a
            # /v1 stream; the end of the body then ends its read (no ``[DONE]`` line,
            # which a seed client would fail to parse as JSON).
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}],
        }
    )


async def _collect(reply: ChatReply, headers: dict[str, str]) -> Response:
    parts = [text async for text in reply.deltas]
    note_usage(reply.outcome.usage)
    answer = ChatAnswer(
        content="".join(parts),
        session_id=reply.session_id,
        finish_reason=reply.outcome.finish_reason,
        truncated_messages=reply.truncated_messages,
    )
    return json_response(200, answer.model_dump(), headers)


class ChatStreamLane:
    """``POST /api/chat/stream`` in the streaming lane (llm_api.lane).

    The body is validated as FastAPI validates it (JSON, then ``ChatRequest`` in Python
    mode); anything FastAPI would refuse — another content type, invalid JSON, a schema
    error — is left to the route, which answers its own 422.
    """

    def parse(self, body: bytes, scope: Scope) -> ChatRequest | None:
        for name, value in scope["headers"]:
            if name == b"content-type":
                kind = value.split(b";", 1)[0].strip().lower()
                if not (kind.endswith(b"/json") or kind.endswith(b"+json")):
                    return None
        try:
            return ChatRequest.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return None

    async def respond(self, request: Request, parsed: ChatRequest) -> Response:
        owner = await get_owner(await current_principal(request))
        return await chat_stream(
            parsed, await get_chat_service(request), await get_settings(request), owner
        )
