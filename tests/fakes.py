"""A fake inference engine: a real aiohttp server on loopback speaking the OpenAI dialect.

Tests steer it through :class:`FakeEngineState` (chunks, delays, failures) and read back
what it saw (requests, streams opened and closed). It is a loopback server rather than a
patched module so that the gateway's real HTTP client, timeouts and disconnects are
exercised.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

Flavor = Literal["llamacpp", "vllm"]


@dataclass
class StreamRecord:
    opened_at: float
    closed_at: float | None = None
    completed: bool = False
    chunks_sent: int = 0


@dataclass
class FakeEngineState:
    chunks: list[str] = field(default_factory=lambda: [f"tok{i} " for i in range(8)])
    chunk_delay: float = 0.0
    first_chunk_delay: float = 0.0
    fail_status: int | None = None  # answer every chat call with this status
    fail_message: str = "fake failure"
    error_after: int | None = None  # send an in-stream error after this many chunks
    drop_after: int | None = None  # cut the connection after this many chunks
    malformed_after: int | None = None  # send an unparsable data line after this many chunks
    huge_line_after: int | None = None  # send one 10 MB data line after this many chunks
    stall_after: int | None = None  # stop sending (connection open) after this many chunks
    loading: bool = False  # llama-server while it loads the model: 503 on chat and /health
    healthy: bool = True
    flavor: Flavor = "llamacpp"
    model_id: str = "fake-model"
    max_model_len: int = 4096  # per request: vLLM's max_model_len, llama-server's slot n_ctx
    supports_tools: bool = False  # llama-server's /props chat_template_caps (no --jinja)
    finish_reason: str = "stop"
    # Non-streaming answers, served in order; the last one repeats.
    replies: deque[str] = field(default_factory=deque)
    reply_delay: float = 0.0  # seconds before each non-streaming answer
    # Non-streaming answers by the request's response_format json_schema name (used first).
    replies_by_schema: dict[str, str] = field(default_factory=dict)
    peak_replies: int = 0  # most non-streaming answers in progress at once
    _replying: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    session_headers: list[str | None] = field(default_factory=list)  # X-Session-ID per call
    streams: list[StreamRecord] = field(default_factory=list)
    running: int = 0

    def open_streams(self) -> int:
        return sum(1 for s in self.streams if s.closed_at is None)


def _chunk(model: str, content: str | None, finish: str | None = None) -> bytes:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _usage_chunk(model: str, prompt: int, completion: int) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


class FakeEngine:
    def __init__(self, state: FakeEngineState | None = None) -> None:
        self.state = state or FakeEngineState()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/v1/models", self._models)
        self.app.router.add_get("/props", self._props)
        self.app.router.add_post("/tokenize", self._tokenize)
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- handlers -----------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        s = self.state
        body = await request.json(loads=orjson.loads)
        s.requests.append(body)
        s.session_headers.append(request.headers.get("X-Session-ID"))
        if s.loading:
            return web.json_response(
                {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
                status=503,
            )
        if s.fail_status is not None:
            return web.json_response(
                {"error": {"code": s.fail_status, "message": s.fail_message,
                           "type": "invalid_request_error"}},
                status=s.fail_status,
            )  # fmt: skip
        if not body.get("stream"):
            if s.reply_delay:
                s._replying += 1
                s.peak_replies = max(s.peak_replies, s._replying)
                try:
                    await asyncio.sleep(s.reply_delay)
                finally:
                    s._replying -= 1
            schema_name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name")
            if schema_name in s.replies_by_schema:
                content = s.replies_by_schema[schema_name]
            else:
                content = s.replies[0] if s.replies else "".join(s.chunks)
                if len(s.replies) > 1:
                    s.replies.popleft()
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": s.model_id,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": s.finish_reason,
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                },
                dumps=lambda o: orjson.dumps(o).decode(),
            )
        return await self._stream(request, body)

    async def _stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        s = self.state
        record = StreamRecord(opened_at=time.monotonic())
        s.streams.append(record)
        s.running += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        try:
            if s.first_chunk_delay:
                await asyncio.sleep(s.first_chunk_delay)
            await response.prepare(request)
            await response.write(_chunk(s.model_id, None))  # the role chunk engines send
            for index, text in enumerate(s.chunks):
                if s.error_after is not None and index == s.error_after:
                    await response.write(
                        b'data: {"error":{"code":500,"message":"fake mid-stream failure"}}\n\n'
                    )
                    record.completed = True
                    return response
                if s.malformed_after is not None and index == s.malformed_after:
                    await response.write(b'data: {"choices": [{"delta": {"content": "\xd7\n\n')
                if s.huge_line_after is not None and index == s.huge_line_after:
                    await response.write(b"data: " + b"x" * (10 * 1024 * 1024) + b"\n\n")
                if s.stall_after is not None and index == s.stall_after:
                    await asyncio.sleep(3600)
                if s.drop_after is not None and index == s.drop_after:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                if s.chunk_delay and index:
                    await asyncio.sleep(s.chunk_delay)
                await response.write(_chunk(s.model_id, text))
                record.chunks_sent += 1
            await response.write(_chunk(s.model_id, None, s.finish_reason))
            if (body.get("stream_options") or {}).get("include_usage"):
                await response.write(_usage_chunk(s.model_id, 10, len(s.chunks)))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            record.completed = True
            return response
        finally:
            record.closed_at = time.monotonic()
            s.running -= 1

    async def _health(self, _: web.Request) -> web.Response:
        if not self.state.healthy or self.state.loading:
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ok"})

    async def _metrics(self, _: web.Request) -> web.Response:
        s = self.state
        if s.flavor == "vllm":
            text = (
                "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                "# TYPE vllm:num_requests_running gauge\n"
                f'vllm:num_requests_running{{engine="0",model_name="{s.model_id}"}} '
                f"{float(s.running)}\n"
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                "# TYPE vllm:num_requests_waiting gauge\n"
                f'vllm:num_requests_waiting{{engine="0",model_name="{s.model_id}"}} 0.0\n'
            )
        else:
            text = (
                "# HELP llamacpp:requests_processing Number of requests processing.\n"
                "# TYPE llamacpp:requests_processing gauge\n"
                f"llamacpp:requests_processing {s.running}\n"
                "# HELP llamacpp:requests_deferred Number of requests deferred.\n"
                "# TYPE llamacpp:requests_deferred gauge\n"
                "llamacpp:requests_deferred 0\n"
            )
        return web.Response(text=text, content_type="text/plain")

    async def _props(self, _: web.Request) -> web.Response:
        s = self.state
        if s.flavor != "llamacpp":
            return web.json_response({"detail": "Not Found"}, status=404)  # vLLM has none
        return web.json_response(
            {
                "total_slots": 4,
                "default_generation_settings": {"n_ctx": s.max_model_len},
                "chat_template_caps": {"supports_tools": s.supports_tools},
            }
        )

    async def _models(self, _: web.Request) -> web.Response:
        s = self.state
        if s.flavor == "llamacpp":
            # llama-server's shape: no max_model_len; meta.n_ctx is a slot's context (-c
            # divided by -np), n_ctx_train the model's (which a request cannot use).
            meta = {"n_ctx": s.max_model_len, "n_ctx_train": 32768}
            return web.json_response(
                {
                    "object": "list",
                    "data": [
                        {"id": s.model_id, "object": "model", "owned_by": "llamacpp", "meta": meta}
                    ],
                }
            )
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": s.model_id,
                        "object": "model",
                        "owned_by": s.flavor,
                        "max_model_len": s.max_model_len,
                    }
                ],
            }
        )

    async def _tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        text = body.get("content") or body.get("prompt") or ""
        # One token per whitespace-separated word: deterministic and easy to reason about.
        tokens = list(range(len(str(text).split())))
        return web.json_response(
            {"tokens": tokens, "count": len(tokens), "max_model_len": self.state.max_model_len}
        )


@asynccontextmanager
async def running_fake_engine(state: FakeEngineState | None = None) -> AsyncIterator[FakeEngine]:
    engine = FakeEngine(state)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
