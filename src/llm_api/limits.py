"""Request body cap, enforced while the body arrives (chunked uploads included)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_api.errors import PayloadTooLarge
from llm_api.responses import api_error_response


class BodySizeLimit:
    """Answer 413 as soon as a body passes ``max_bytes``; never read the rest.

    A declared Content-Length over the cap is refused before reading anything. A body
    without one (chunked) is counted as it arrives; once over, the app's own answer to
    the truncated body is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await api_error_response(self._too_large())(scope, receive, send)
                    return
                # The server stops a body at its declared length: nothing to count, and
                # no wrapper for each event of a streamed answer to pass through.
                await self.app(scope, receive, send)
                return

        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    # Stop reading: pretend the body ended here; the answer is replaced.
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        replaced = False

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if not exceeded:
                await send(message)
            elif not replaced:
                replaced = True
                await api_error_response(self._too_large())(scope, receive, send)

        await self.app(scope, limited_receive, guarded_send)

    def _too_large(self) -> PayloadTooLarge:
        # Made only when needed: an exception and its message on every request showed in
        # the streaming routes' per-request profile.
        return PayloadTooLarge(f"request body is larger than the limit of {self.max_bytes} bytes")
