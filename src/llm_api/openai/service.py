"""The OpenAI-compatible relay: check the request, pick the model, pass the engine's answer on.

Streams are relayed line by line without re-encoding: the engine already speaks this
dialect. Per chunk the relay does two substring checks; only the usage chunk and error
chunks are parsed. The first chunk is read before the caller answers, so refusals become
real HTTP statuses; later failures become one ``data: {"error": …}`` event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson

from llm_api.engine.client import EngineClient, JsonObject
from llm_api.engine.models import ModelCatalog
from llm_api.engine.sampling import engine_defaults
from llm_api.errors import ApiError, BadRequest, EngineBadResponse, EngineRejected, ModelNotFound
from llm_api.observability import metrics
from llm_api.observability.context import RequestRecord
from llm_api.openai.schemas import ChatCompletionRequest
from llm_api.responses import error_body, note_api_error

log = logging.getLogger(__name__)

DEFAULT_MODEL_ALIAS = "default"
ROUTE = "/v1/chat/completions"
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class RelayLimits:
    default_max_tokens: int
    max_tokens_cap: int


@dataclass(slots=True)
class RelayStream:
    """An open engine stream whose first chunk has arrived; iterate ``events`` to relay it."""

    events: AsyncIterator[bytes]


class OpenAIRelay:
    def __init__(self, engine: EngineClient, models: ModelCatalog, limits: RelayLimits) -> None:
        self._engine = engine
        self._models = models
        self._limits = limits
        self._created = int(time.time())

    async def list_models(self) -> JsonObject:
        served = await self._models.served()
        return {
            "object": "list",
            "data": [
                {
                    "id": served.id,
                    "object": "model",
                    "created": self._created,
                    "owned_by": served.owned_by or "llm-api",
                    "max_model_len": served.max_model_len,
                }
            ],
        }

    async def _payload(self, request: ChatCompletionRequest) -> dict[str, Any]:
        served = await self._models.served()
        if request.model not in (served.id, DEFAULT_MODEL_ALIAS):
            # The caller's text is not echoed (unlike OpenAI): error bodies carry no content.
            raise ModelNotFound(
                f"The requested model does not exist; this server serves "
                f"'{served.id}' (also reachable as '{DEFAULT_MODEL_ALIAS}')",
                param="model",
            )
        if request.tools and served.supports_tools is False:
            # llama-server answers this with a 500 ("tools param requires --jinja flag"),
            # which OpenAI clients retry; the engine's own capabilities say it beforehand.
            raise EngineRejected(
                "the inference engine serving this model does not support tools; send the "
                "request without 'tools' (llama-server needs --jinja and a chat template "
                "that takes tools)",
                upstream_status=400,
                param="tools",
            )
        default_max_tokens, sampling = engine_defaults(served, self._limits.default_max_tokens)
        max_tokens = request.requested_max_tokens or default_max_tokens
        if max_tokens > self._limits.max_tokens_cap:
            param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
            raise BadRequest(f"{param} must be at most {self._limits.max_tokens_cap}", param=param)
        payload = request.model_dump(exclude_unset=True, by_alias=True)
        payload.pop("user", None)
        payload.pop("max_completion_tokens", None)
        payload.pop("stream_options", None)
        payload["model"] = served.id
        payload["max_tokens"] = max_tokens
        for name, value in sampling.items():
            payload.setdefault(name, value)  # the caller's own sampling fields win
        return payload

    async def complete(self, request: ChatCompletionRequest, record: RequestRecord) -> JsonObject:
        payload = await self._payload(request)
        record.model = payload["model"]
        answer = await self._engine.complete_chat(payload)
        record.note_usage(answer.get("usage"))
        choices = answer.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            record.finish_reason = choices[0].get("finish_reason")
        return answer

    async def open_stream(
        self, request: ChatCompletionRequest, record: RequestRecord
    ) -> RelayStream:
        """Start the engine stream and wait for its first chunk (errors raise from here)."""
        payload = await self._payload(request)
        record.model = payload["model"]
        # Usage is always asked for and always passed on: the final chunk carries it.
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
        events = self._engine.stream_chat_events(orjson.dumps(payload))
        try:
            first = await anext(events)
        except StopAsyncIteration:
            raise EngineBadResponse("the inference engine ended the stream at once") from None
        except BaseException:
            await events.aclose()
            raise
        good, error = _split_at_error(first)
        if error is not None and not good:
            await events.aclose()
            raise error  # nothing sent yet: a real HTTP status
        return RelayStream(_relay(first, events, record))


def _split_at_error(block: bytes) -> tuple[bytes, EngineBadResponse | None]:
    """The events before an engine error chunk, and that error (None when there is none)."""
    if b'"error"' not in block:
        return block, None
    offset = 0
    for line in block.splitlines(keepends=True):
        if line.startswith(b"data:") and b'"error"' in line:
            try:
                chunk = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return block[:offset], EngineBadResponse(
                    "the inference engine sent an unreadable chunk"
                )
            if isinstance(chunk, dict) and "error" in chunk:
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else error
                return block[:offset], EngineBadResponse(
                    f"the inference engine reported an error: {message}"
                )
        offset += len(line)
    return block, None


def _inspect(block: bytes, record: RequestRecord) -> None:
    # Only the usage chunk is parsed: engines write compact JSON, so this test is exact
    # for a usage object and false for the `"usage":null` some engines put in every chunk.
    if b'"usage":{' in block:
        for line in block.split(b"\n"):
            if line.startswith(b"data:") and b'"usage":{' in line:
                try:
                    chunk = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(chunk, dict):
                    record.note_usage(chunk.get("usage"))


async def _relay(
    first: bytes, rest: AsyncGenerator[bytes, None], record: RequestRecord
) -> AsyncIterator[bytes]:
    """Pass the engine's event runs on unchanged, then ``[DONE]``; errors become one event."""
    finished = False
    try:
        async with aclosing(rest):
            block = first
            try:
                while True:
                    good, error = _split_at_error(block)
                    if good:
                        _inspect(good, record)
                        yield good  # the engine's own bytes: already SSE
                    if error is not None:
                        raise error
                    try:
                        block = await anext(rest)
                    except StopAsyncIteration:
                        break
            except ApiError as exc:
                # After the first byte the status is sent: one error event, then [DONE].
                note_api_error(exc, in_stream=True)
                log.warning("openai stream failed after start: %s", exc.type)
                yield b"data: " + orjson.dumps(error_body(exc.message, exc.type, code=exc.code))
                yield b"\n\n" + DONE
                finished = True
                return
            finished = True
            yield DONE
    except (GeneratorExit, asyncio.CancelledError):
        if not finished:
            # The client went away; leaving `async with aclosing` closed the engine request.
            metrics.UPSTREAM_ABORTS.labels(ROUTE).inc()
        raise
