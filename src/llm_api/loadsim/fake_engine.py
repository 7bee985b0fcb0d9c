"""A deterministic engine for relay-only runs: a loopback aiohttp server in its own process.

It speaks the part of the OpenAI dialect the gateway uses: a stream is a role chunk, then
``min(max_tokens, chunks)`` content chunks ``delay`` apart, a finish chunk, a usage chunk
when asked for, ``[DONE]``; a non-streamed answer (the email endpoints) waits
``reply_delay`` and answers valid JSON for the schema it is asked for (tasks, summary,
title). ``/metrics`` has llama-server's running/deferred gauges. What it measures is the
relay in front of it, so its own work per chunk is as small as aiohttp allows.

    python -m llm_api.loadsim.fake_engine --port 8061 [--chunks 64] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import web

MODEL = "fake-model"
_WORDS = ("שלום", "עולם", "hello", "ירושלים", "world", "תודה", "בוקר", "טוב")

_ANSWERS = {
    "tasks": {
        "tasks": [
            {
                "assigned_to": "דנה כהן",
                "title": "לשלוח את הדוח הרבעוני",
                "description": "לשלוח את הדוח הרבעוני להנהלה עד יום חמישי.",
                "due_date": "יום חמישי",
                "evidence": "נא לשלוח את הדוח עד יום חמישי",
            }
        ]
    },
    "summary": {"title": "עדכון פרויקט", "summary": "הצוות סיים את שלב הבדיקות ומבקש אישור."},
    "title": {"title": "שאלה על ירושלים"},
}


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


class FakeEngine:
    def __init__(self, chunks: int, delay: float, reply_delay: float) -> None:
        self.chunks = [_chunk({"content": _WORDS[i % len(_WORDS)] + " "}) for i in range(chunks)]
        self.delay = delay
        self.reply_delay = reply_delay
        self.running = 0
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/v1/models", self.models)
        self.app.router.add_post("/tokenize", self.tokenize)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.running += 1
        try:
            if body.get("stream"):
                return await self._stream(request, body)
            return await self._answer(body)
        finally:
            self.running -= 1

    async def _stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        count = min(int(body.get("max_tokens") or len(self.chunks)), len(self.chunks))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk({"role": "assistant"}))
        for index in range(count):
            if index and self.delay:
                await asyncio.sleep(self.delay)
            await response.write(self.chunks[index])
        await response.write(_chunk({}, "stop" if count == len(self.chunks) else "length"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 10, "completion_tokens": count, "total_tokens": 10 + count}
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": MODEL,
                "choices": [],
                "usage": usage,
            }
            await response.write(b"data: " + orjson.dumps(payload) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _answer(self, body: dict[str, Any]) -> web.Response:
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name")
        answer = _ANSWERS.get(name) if isinstance(name, str) else None
        content = orjson.dumps(answer).decode() if answer else "שלום! זו תשובה קצרה."
        reply = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
        }
        return web.Response(body=orjson.dumps(reply), content_type="application/json")

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(self, _: web.Request) -> web.Response:
        text = (
            "# TYPE llamacpp:requests_processing gauge\n"
            f"llamacpp:requests_processing {self.running}\n"
            "# TYPE llamacpp:requests_deferred gauge\n"
            "llamacpp:requests_deferred 0\n"
        )
        return web.Response(text=text, content_type="text/plain")

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": MODEL, "object": "model", "owned_by": "fake", "max_model_len": 4096}
                ],
            }
        )

    async def tokenize(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        text = body.get("content") or body.get("prompt") or ""
        tokens = list(range(len(str(text).split())))  # a token per word: deterministic
        return web.json_response({"tokens": tokens, "count": len(tokens), "max_model_len": 4096})


async def serve(port: int, chunks: int, delay: float, reply_delay: float) -> None:
    engine = FakeEngine(chunks, delay, reply_delay)
    runner = web.AppRunner(engine.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--reply-delay", type=float, default=0.3)
    args = parser.parse_args()
    main = serve(args.port, args.chunks, args.delay, args.reply_delay)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop  # noqa: PLC0415 - optional: plain asyncio without it
        except ImportError:
            asyncio.run(main)
        else:
            uvloop.run(main)


if __name__ == "__main__":
    main()
