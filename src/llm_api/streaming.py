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
from starlette.types import Send

PING = b": ping\n\n"


class EventStream(StreamingResponse):
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
