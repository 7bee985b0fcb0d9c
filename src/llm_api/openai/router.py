"""``POST /v1/chat/completions`` and ``GET /v1/models``: the OpenAI API, for every OpenAI client.

The body is parsed here rather than by FastAPI so that bad input gets OpenAI's status (400,
not FastAPI's 422) in the shared error envelope, before the engine is called.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.types import Scope

from llm_api.errors import BadRequest, UnsupportedParameter
from llm_api.json_body import JsonRoute
from llm_api.observability.context import RequestRecord, current_request, request_id_from
from llm_api.openai.schemas import ChatCompletionRequest
from llm_api.openai.service import OpenAIRelay
from llm_api.responses import json_response
from llm_api.state import AppState
from llm_api.streaming import RelayedStream

router = APIRouter(tags=["openai"], route_class=JsonRoute)


async def get_openai_relay(request: Request) -> OpenAIRelay:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hand-off
    # per request that showed up in the relay's CPU profile.
    return AppState.of(request).openai


OpenAIRelayDep = Annotated[OpenAIRelay, Depends(get_openai_relay)]

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"description": "Invalid or unsupported parameter"},
    404: {"description": "Unknown model"},
    503: {"description": "The inference engine is unavailable"},
}


@router.get("/v1/models")
async def list_models(relay: OpenAIRelayDep) -> Response:
    return json_response(200, await relay.list_models())


@router.post(
    "/v1/chat/completions",
    responses={
        200: {
            "content": {"application/json": {}, "text/event-stream": {}},
            "description": "A chat.completion object, or chat.completion.chunk events",
        },
        **_ERRORS,
    },
)
async def chat_completions(request: Request, relay: OpenAIRelayDep) -> Response:
    try:
        data = await request.json()  # the guard's parse (JsonRoute: orjson, made once)
    except orjson.JSONDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    return await answer(request, relay, validate_body(data))


async def answer(request: Request, relay: OpenAIRelay, body: ChatCompletionRequest) -> Response:
    record = current_request() or RequestRecord(request_id_from(None), "POST", request.url.path)
    if not body.stream:
        return json_response(200, await relay.complete(body, record))
    stream = await relay.open_stream(body, record)
    # The engine's events are already SSE-encoded; a StreamingResponse passes them on with
    # the least work per chunk (the relay's cost budget is tens of microseconds) and still
    # cancels the generator, closing the engine request, when the client goes away.
    # No keep-alive comments: OpenAI streams carry none, and tokens arrive every few ms.
    return RelayedStream(
        stream.events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def parse_body(raw: bytes) -> ChatCompletionRequest:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    return validate_body(data)


def validate_body(data: object) -> ChatCompletionRequest:
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise _describe(exc) from None


def _describe(exc: ValidationError) -> BadRequest:
    errors = exc.errors(include_url=False, include_input=False)
    unsupported = [e for e in errors if e["type"] == "extra_forbidden"]
    if unsupported:
        names = [".".join(str(p) for p in e["loc"]) for e in unsupported]
        return UnsupportedParameter(
            f"unsupported parameter(s): {', '.join(names)}; this server does not honour "
            "them and will not silently drop them",
            param=names[0],
        )
    first = errors[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: "
        f"{str(e['msg']).removeprefix('Value error, ')}"
        for e in errors[:5]
    )
    return BadRequest(problems, param=param)


class CompletionsLane:
    """``POST /v1/chat/completions`` in the streaming lane (llm_api.lane): same parser, same
    answer; a body the parser refuses is left to the route, which answers the same 400."""

    def parse(self, body: bytes, scope: Scope) -> ChatCompletionRequest | None:
        try:
            return parse_body(body)
        except BadRequest:
            return None

    async def respond(self, request: Request, parsed: ChatCompletionRequest) -> Response:
        return await answer(request, await get_openai_relay(request), parsed)
