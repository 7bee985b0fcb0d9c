"""Server-sent events with keep-alive comments, for less than a microsecond of work per event.

Starlette's :class:`StreamingResponse` already does what a stream needs (it closes the body
iterator, and with it the engine request, when the client disconnects); this adds one thing,
a ``: ping`` comment when no event went out for a while, so that proxies and clients keep a
quiet connection open. sse-starlette does the same but opens an anyio cancel scope around
every event it sends (its per-send timeout), which cost more than the rest of the relay's
per-event work together.

The pinger is a second task that wakes once per interval and looks at a counter the stream
bumps per event: the stream itself never reads a clock. Every send is a whole event, so a
ping that goes out while an event waits for the socket cannot split it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

PING = b": ping\n\n"


class RelayedStream(StreamingResponse):
    """A :class:`StreamingResponse` that watches for the client leaving with one plain task.

    Starlette runs the stream and a disconnect listener in an anyio task group (uvicorn
    speaks ASGI 2.3, whose ``send`` does not fail once the client is gone); the group, its
    cancel scopes and its second task cost ~7 % of a short relayed request's CPU. Here the
    listener is a bare asyncio task that cancels the stream when ``http.disconnect``
    arrives: the body iterator is unwound as before, which closes the engine request.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None  # noqa: S101 - always inside a task under ASGI
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            streaming.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            # Our own cancellation ends the response quietly; anyone else's goes on.
            if not gone or streaming.uncancel() > 0:
                raise
        finally:
            watcher.cancel()
        if self.background is not None:
            await self.background()


class EventStream(RelayedStream):
    """``text/event-stream`` of pre-encoded events (``data: …\\n\\n`` bytes)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterable[bytes],
        *,
        ping_seconds: float,
        headers: Mapping[str, str] | None = None,
        status_code: int = 200,  # FastAPI reads the documented status from this default
    ) -> None:
        super().__init__(
            events,
            status_code,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})},
        )
        self.ping_seconds = ping_seconds
        self._sent = 0

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        pinger = asyncio.create_task(self._keep_alive(send))
        try:
            async for event in self.body_iterator:
                self._sent += 1
                await send({"type": "http.response.body", "body": event, "more_body": True})
        finally:
            pinger.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _keep_alive(self, send: Send) -> None:
        """A ping after each interval in which no event was sent."""
        seen = self._sent
        while True:
            await asyncio.sleep(self.ping_seconds)
            if self._sent == seen:
                try:
                    await send({"type": "http.response.body", "body": PING, "more_body": True})
                except OSError:
                    return  # the client is gone; the stream notices on its next send
            seen = self._sent
