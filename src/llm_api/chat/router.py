"""``POST /api/chat/stream``: parse, call the chat service, encode its deltas as SSE."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from llm_api.chat.schemas import ChatRequest
from llm_api.chat.service import ChatReply
from llm_api.deps import ChatServiceDep, SettingsDep
from llm_api.errors import ApiError, json_response

log = logging.getLogger(__name__)
router = APIRouter(tags=["chat"])

_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    422: {"description": "Invalid request"},
    503: {"description": "The inference engine is unavailable"},
    504: {"description": "The inference engine did not answer in time"},
}


@router.post(
    "/api/chat/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"},
        **_ERROR_RESPONSES,
    },
)
async def chat_stream(body: ChatRequest, chat: ChatServiceDep, settings: SettingsDep) -> Response:
    reply = await chat.start_reply(body)
    headers = {"X-Session-ID": reply.session_id, "Cache-Control": "no-store"}
    if not body.stream:
        return await _collect(reply, headers)
    return EventSourceResponse(
        _events(reply),
        headers={**headers, "X-Accel-Buffering": "no"},
        ping=int(settings.sse_ping_seconds),
        sep="\n",
    )


def _data(event: dict[str, object]) -> ServerSentEvent:
    # orjson writes UTF-8 as is: Hebrew reaches the client unescaped.
    return ServerSentEvent(data=orjson.dumps(event).decode())


async def _events(reply: ChatReply) -> AsyncIterator[ServerSentEvent]:
    """Content events, then exactly one ``done`` or one ``error`` event."""
    try:
        async for text in reply.deltas:
            yield _data({"type": "content", "content": text})
    except ApiError as exc:
        log.warning("chat stream failed after start: %s", exc.type)
        yield _data({"type": "error", "error": exc.message, "retryable": exc.retryable})
        return
    yield _data(
        {
            "type": "done",
            "session_id": reply.session_id,
            "finish_reason": reply.outcome.finish_reason,
        }
    )


async def _collect(reply: ChatReply, headers: dict[str, str]) -> Response:
    parts = [text async for text in reply.deltas]
    return json_response(
        200,
        {
            "type": "message",
            "content": "".join(parts),
            "session_id": reply.session_id,
            "finish_reason": reply.outcome.finish_reason,
        },
        headers,
    )
