"""The floor under the relay benchmark: the least a Python relay can do on this machine.

A bare ASGI app for uvicorn, with no framework, no middleware, no checks, no metrics and no
logs: it reads the body, points it at the engine's model, asks for usage, opens the engine
stream with the same client the gateway uses (aiohttp, one pooled session) and passes every
byte on as it arrives. Nothing a real gateway needs is here; it exists so that the relay
benchmark can say what part of the gateway's cost is the gateway and what part is Python,
uvicorn, aiohttp and the machine, measured in the same interleaved run as the gateway:

    .venv/bin/python -m bench.openai_relay_bench --floor
    llm-api bench relay

Not for serving anything.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson
from starlette.types import Receive, Scope, Send

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")],
}


class RelayFloor:
    def __init__(self, engine_url: str) -> None:
        self.url = engine_url.rstrip("/") + "/v1/chat/completions"
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["method"] == "GET":  # /ping, for the benchmark's start-up wait
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"pong"})
        else:
            await self._relay(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=1024),
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _relay(self, receive: Receive, send: Send) -> None:
        if self.session is None:  # started by the lifespan
            raise RuntimeError("the relay floor serves only after its lifespan started")
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload: dict[str, Any] = orjson.loads(body)
        payload["model"] = "fake-model"
        payload["stream_options"] = {"include_usage": True}
        async with self.session.post(
            self.url, data=orjson.dumps(payload), headers={"Content-Type": "application/json"}
        ) as response:
            await send(_START)
            async for piece in response.content.iter_any():
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def create_app() -> RelayFloor:
    return RelayFloor(os.environ["LLM_API_ENGINE_URL"])
