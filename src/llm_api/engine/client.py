"""The boundary to the inference engine: OpenAI-compatible HTTP, nothing else.

One :class:`EngineClient` lives for the whole app (built in the lifespan). It owns an
aiohttp session with explicit pool limits and timeouts, and turns every transport or
protocol failure into a domain error from :mod:`llm_api.errors`. aiohttp + orjson was
chosen over httpx after measuring the relay cost per streamed chunk (docs/chat-benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson
from aiohttp.http_exceptions import HttpProcessingError

from llm_api.errors import (
    EngineBadResponse,
    EngineError,
    EngineRejected,
    EngineTimeout,
    EngineUnavailable,
)

JsonObject = dict[str, Any]
_MAX_ERROR_TEXT = 500
_HTTP_SERVICE_UNAVAILABLE = 503
_STREAM_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


@dataclass(frozen=True, slots=True)
class EngineLimits:
    base_url: str
    request_timeout: float = 300.0
    health_timeout: float = 5.0
    connect_timeout: float = 5.0
    pool_size: int = 100
    keepalive_expiry: float = 60.0
    # Background work (titles, batch email) yields to people: on vLLM started with
    # ``--scheduling-policy priority`` it is sent with this ``priority`` (larger runs later;
    # people's requests keep vLLM's default 0). None: the engine has no priority scheduling
    # (llama-server, vLLM in FCFS mode, which rejects the field).
    background_priority: int | None = None
    # At most this many background requests from this process in flight at once, so that
    # a burst of titles cannot hold every engine slot (llama-server schedules first come,
    # first served). None: no cap.
    background_slots: int | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str
    # The longest context one request can use (prompt + completion): vLLM's
    # ``max_model_len``; llama-server's per-slot ``n_ctx`` (its ``-c`` split across ``-np``
    # slots), never the model's training length.
    max_model_len: int | None
    # Whether the engine accepts ``tools``: False when it says it does not (llama-server's
    # chat template capabilities), None when it does not say (vLLM: it decides per request).
    supports_tools: bool | None = None


class EngineClient:
    """Talks to vLLM, llama-server or any OpenAI-compatible engine over HTTP."""

    def __init__(self, limits: EngineLimits) -> None:
        self.limits = limits
        self.base_url = limits.base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._background = (
            asyncio.Semaphore(limits.background_slots) if limits.background_slots else None
        )

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            limit=self.limits.pool_size,
            keepalive_timeout=self.limits.keepalive_expiry,
            # Loopback or a private network: no DNS cache churn, no proxies from the env.
            use_dns_cache=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=self.limits.connect_timeout,
                sock_read=self.limits.request_timeout,
            ),
            raise_for_status=False,
            auto_decompress=False,
            read_bufsize=1 << 20,  # long SSE lines (big tool-call chunks) stay one line
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("EngineClient used outside its 'async with' block")
        return self._session

    # --- generation ---------------------------------------------------------------------
    async def stream_chat(
        self, payload: Mapping[str, Any], *, affinity: str | None = None
    ) -> AsyncGenerator[JsonObject, None]:
        """Open a streaming chat completion and yield each parsed chunk.

        The HTTP status is checked before the first chunk is yielded, so a caller that
        awaits the first item learns of a refused request before answering its client.
        Closing the generator (client gone, task cancelled) closes the upstream
        connection, which is what makes the engine free the slot.

        ``affinity`` (the conversation's id) goes out as ``X-Session-ID``: vllm-router's
        ``consistent_hash`` policy keys on it, so every turn of a conversation lands on the
        replica that holds its cached prefix (docs/REPLICAS.md). One engine ignores it.
        """
        body = orjson.dumps({**payload, "stream": True})
        response = await self._post("/v1/chat/completions", body, affinity)
        finished = False
        try:
            if response.status != 200:
                raise await self._error_from(response)
            async for chunk in _iter_sse_json(response):
                yield chunk
            # Read the few bytes after [DONE] so the connection can go back to the pool.
            await response.content.read()
            finished = True
        except HttpProcessingError:
            # aiohttp's line reader refuses a line beyond twice its buffer (LineTooLong, not a
            # ClientError): no engine sends a 2 MB chunk of one reply; a broken stream.
            raise EngineBadResponse("the inference engine sent an oversized line") from None
        except TimeoutError:
            raise EngineTimeout("the inference engine stopped sending tokens") from None
        except aiohttp.ClientError:
            raise EngineUnavailable("the inference engine dropped the connection") from None
        finally:
            if finished:
                response.release()
            else:
                # close(), not release(): an unfinished body must not go back to the pool,
                # and closing the socket is what tells the engine to abort the request.
                response.close()

    async def stream_chat_events(
        self, body: bytes, *, affinity: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Like :meth:`stream_chat`, for relays: yield the engine's SSE bytes as they come.

        ``body`` is the finished JSON request (``"stream": true`` included). Each item is a
        run of *complete* events (``data: …`` lines with their blank-line separators),
        exactly as the engine wrote them — usually one event, several when they arrived
        together — so a relay passes them on in one write and parses nothing it does not
        need to. ``[DONE]`` ends the iteration and is not yielded; an ``error:`` line
        raises. Same contract as :meth:`stream_chat` otherwise: the status is checked
        before the first item, and closing early closes the upstream request.
        """
        response = await self._post("/v1/chat/completions", body, affinity)
        finished = False
        try:
            if response.status != 200:
                raise await self._error_from(response)
            pending = b""
            async for piece in response.content.iter_any():
                pending = pending + piece if pending else piece
                cut = max(pending.rfind(b"\n\n") + 2, pending.rfind(b"\r\n\r\n") + 4, 0)
                if not cut:
                    continue  # no complete event yet
                block, pending = pending[:cut], pending[cut:]
                if b"error:" in block:
                    _raise_on_error_line(block)
                done_at = _done_offset(block) if b"[DONE]" in block else -1
                if done_at >= 0:
                    if done_at:
                        yield block[:done_at]
                    await response.content.read()
                    finished = True
                    return
                yield block
            raise EngineUnavailable("the inference engine ended the stream without [DONE]")
        except TimeoutError:
            raise EngineTimeout("the inference engine stopped sending tokens") from None
        except aiohttp.ClientError:
            raise EngineUnavailable("the inference engine dropped the connection") from None
        finally:
            if finished:
                response.release()
            else:
                response.close()  # see stream_chat: this is what aborts the engine request

    async def complete_chat(
        self,
        payload: Mapping[str, Any],
        *,
        affinity: str | None = None,
        background: bool = False,
    ) -> JsonObject:
        """One non-streaming completion. ``background`` marks work no person waits on
        (titles, batch email): it runs at the lower priority and under the slot cap."""
        if not background:
            return await self._complete(payload, affinity)
        if self.limits.background_priority is not None:
            payload = {**payload, "priority": self.limits.background_priority}
        if self._background is None:
            return await self._complete(payload, affinity)
        async with self._background:
            return await self._complete(payload, affinity)

    async def _complete(self, payload: Mapping[str, Any], affinity: str | None) -> JsonObject:
        body = orjson.dumps({**payload, "stream": False})
        response = await self._post("/v1/chat/completions", body, affinity)
        async with response:
            if response.status != 200:
                raise await self._error_from(response)
            return await self._read_json(response)

    async def tokenize(self, text: str) -> list[int]:
        # llama-server reads "content", vLLM "prompt" (it answers 400 without it); each
        # ignores the other's field, so one body serves both engines.
        response = await self._post("/tokenize", orjson.dumps({"content": text, "prompt": text}))
        async with response:
            if response.status != 200:
                raise await self._error_from(response)
            data = await self._read_json(response)
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise EngineBadResponse("the engine's /tokenize answer has no token list")
        return tokens

    # --- introspection --------------------------------------------------------------------
    async def is_healthy(self) -> bool:
        try:
            async with self.session.get(
                self.base_url + "/health",
                timeout=aiohttp.ClientTimeout(total=self.limits.health_timeout),
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def metrics_text(self) -> str:
        try:
            async with self.session.get(
                self.base_url + "/metrics",
                timeout=aiohttp.ClientTimeout(total=self.limits.health_timeout),
            ) as response:
                if response.status != 200:
                    raise EngineBadResponse(f"the engine's /metrics answered {response.status}")
                return await response.text()
        except TimeoutError:
            raise EngineTimeout("the engine's /metrics did not answer in time") from None
        except aiohttp.ClientError:
            raise EngineUnavailable("the inference engine is not reachable") from None

    async def models(self) -> list[ModelInfo]:
        try:
            async with self.session.get(
                self.base_url + "/v1/models",
                timeout=aiohttp.ClientTimeout(total=self.limits.health_timeout),
            ) as response:
                if response.status != 200:
                    raise await self._error_from(response)
                data = await self._read_json(response)
        except TimeoutError:
            raise EngineTimeout("the engine's /v1/models did not answer in time") from None
        except aiohttp.ClientError:
            raise EngineUnavailable("the inference engine is not reachable") from None
        found = []
        for item in data.get("data") or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                # llama-server's meta: n_ctx is what a slot holds, n_ctx_train what the model
                # was trained for (32,768 for Gemma 3 270M, which a request cannot use).
                meta = item.get("meta") or {}
                max_len = item.get("max_model_len") or meta.get("n_ctx") or meta.get("n_ctx_train")
                found.append(
                    ModelInfo(
                        id=item["id"],
                        owned_by=str(item.get("owned_by", "")),
                        max_model_len=max_len if isinstance(max_len, int) else None,
                    )
                )
        return found

    async def tool_support(self) -> bool | None:
        """llama-server's ``/props`` says whether its chat template takes tools; other
        engines have no ``/props`` (None: unknown, they decide per request)."""
        try:
            async with self.session.get(
                self.base_url + "/props",
                timeout=aiohttp.ClientTimeout(total=self.limits.health_timeout),
            ) as response:
                if response.status != 200:
                    return None
                data = await self._read_json(response)
        except (TimeoutError, aiohttp.ClientError):
            return None
        caps = data.get("chat_template_caps")
        if isinstance(caps, dict) and isinstance(caps.get("supports_tools"), bool):
            return bool(caps["supports_tools"])
        return None

    # --- plumbing -----------------------------------------------------------------------
    async def _post(
        self, path: str, body: bytes, affinity: str | None = None
    ) -> aiohttp.ClientResponse:
        headers = (
            _STREAM_HEADERS if affinity is None else {**_STREAM_HEADERS, "X-Session-ID": affinity}
        )
        try:
            return await self.session.post(self.base_url + path, data=body, headers=headers)
        except TimeoutError:
            raise EngineTimeout("the inference engine did not answer in time") from None
        except aiohttp.ClientError:
            raise EngineUnavailable("the inference engine is not reachable") from None

    async def _read_json(self, response: aiohttp.ClientResponse) -> JsonObject:
        try:
            data = orjson.loads(await response.read())
        except orjson.JSONDecodeError:
            raise EngineBadResponse("the inference engine answered with invalid JSON") from None
        except TimeoutError:
            raise EngineTimeout("the inference engine did not answer in time") from None
        except aiohttp.ClientError:
            raise EngineUnavailable("the inference engine dropped the connection") from None
        if not isinstance(data, dict):
            raise EngineBadResponse("the inference engine answered with unexpected JSON")
        return data

    async def _error_from(self, response: aiohttp.ClientResponse) -> EngineError:
        try:
            raw = await asyncio.wait_for(response.content.read(64 * 1024), timeout=5)
        except (TimeoutError, aiohttp.ClientError):
            raw = b""
        reason = _engine_reason(raw) or f"status {response.status}"
        if 400 <= response.status < 500:
            return EngineRejected(
                f"the engine rejected the request: {reason}", upstream_status=response.status
            )
        if response.status == _HTTP_SERVICE_UNAVAILABLE:
            return EngineUnavailable(f"the inference engine is not ready: {reason}")
        return EngineBadResponse(f"the inference engine failed: {reason}")


def _done_offset(block: bytes) -> int:
    """Where the ``data: [DONE]`` line starts in a run of events, or -1 (text that merely
    contains "[DONE]" inside a chunk's JSON does not count)."""
    start = 0
    while (at := block.find(b"[DONE]", start)) >= 0:
        line_start = block.rfind(b"\n", 0, at) + 1
        line_end = block.find(b"\n", at)
        line = block[line_start : line_end if line_end >= 0 else len(block)].strip()
        if line in (b"data: [DONE]", b"data:[DONE]"):
            return line_start
        start = at + 6
    return -1


def _raise_on_error_line(block: bytes) -> None:
    for line in block.splitlines():
        if line.startswith(b"error:"):
            raise EngineBadResponse(
                "the inference engine reported an error: " + _engine_reason(line[6:])
            )


def _engine_reason(raw: bytes) -> str:
    """The human part of an engine's error body (vLLM and llama-server shapes)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()[:_MAX_ERROR_TEXT]
    message: object = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        message = message or data.get("message") or data.get("detail")
    return str(message or "").strip()[:_MAX_ERROR_TEXT]


async def _iter_sse_json(response: aiohttp.ClientResponse) -> AsyncIterator[JsonObject]:
    """Parse an OpenAI-style SSE body: ``data: {json}`` lines until ``data: [DONE]``."""
    async for line in response.content:
        if not line.startswith(b"data:"):
            if line.startswith(b"error:"):
                raise EngineBadResponse(
                    "the inference engine reported an error: " + _engine_reason(line[6:])
                )
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise EngineBadResponse("the inference engine sent an unreadable chunk") from None
        if isinstance(chunk, dict):
            if "error" in chunk:
                raise EngineBadResponse(
                    "the inference engine reported an error: " + _engine_reason(data)
                )
            yield chunk
