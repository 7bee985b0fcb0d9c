"""The streaming lane: the two streaming routes served without FastAPI's route machinery.

``POST /v1/chat/completions`` and ``POST /api/chat/stream`` are the routes whose cost per
request and per chunk decides what one worker carries. Through FastAPI a request passes
Starlette's error middleware, FastAPI's telemetry and body-limit layers, the exception
middleware, the exit-stack middleware, the router's matching, the route's dependency solver
and two exception wrappers — and every chunk of the answer passes three ``send`` wrappers
that only ever look at the first message. Measured against a bare Python relay, that was
~0.2 ms of CPU per request and a third of the gateway's own cost per chunk.

In the lane a valid request runs through **the same middleware** (the app's own
``user_middleware``: security headers, CORS, trusted hosts, the request observer, the body
limit, the slot release, tracing — built from the same list, so a layer added to the app is
in the lane too) around a plain ASGI endpoint. The endpoint runs **the guards of the
registered route** (taken from the route itself, so the route audit in
tests/auth/test_access.py covers the lane), then the same function the route calls. Errors
go through the app's own exception handlers. The routes stay registered: OpenAPI documents
them and they serve everything the lane hands back.

The lane takes only what it can answer exactly as the route would: a ``POST`` with a declared
``Content-Length`` within the body limit whose body the route's own parser accepts. Anything
else — no length, invalid JSON, a body the schema refuses — is replayed, untouched, into the
full FastAPI stack, so every error answer is the route's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_api.json_body import JsonRequest


class LaneEndpoint(Protocol):
    """What a route serves in the lane: its parser and its answer."""

    def parse(self, body: bytes, scope: Scope) -> object | None:
        """The parsed request, or None when the route itself must answer (an error)."""

    async def respond(self, request: Request, parsed: Any) -> Response:
        """The route's answer to a request its guards admitted."""


Guard = Callable[[Request], Awaitable[None]]


def _route_of(app: FastAPI, path: str) -> tuple[Any, list[Guard]]:
    """The registered POST route for ``path`` and its dependencies (the router's guards)."""
    for item in _effective_routes(app.routes):
        if item.path == path and "POST" in (getattr(item, "methods", None) or ()):
            guards = []
            for dependency in item.dependencies:
                call = getattr(dependency, "dependency", None)
                if not callable(call) or not getattr(call, "required_scope", None):
                    # A dependency the lane cannot run without FastAPI's solver: refuse to
                    # start rather than serve the route without it.
                    raise RuntimeError(f"{path}: dependency {call!r} cannot run in the lane")
                guards.append(call)
            if not guards:
                raise RuntimeError(f"{path} has no guard; the lane serves only guarded routes")
            return item, guards
    raise RuntimeError(f"no POST route {path} to serve in the lane")


def _effective_routes(routes: list[Any]) -> list[Any]:
    found = []
    for route in routes:
        if hasattr(route, "effective_candidates"):  # FastAPI >= 0.16x keeps routers nested
            found += _effective_routes(list(route.effective_candidates()))
        else:
            found.append(route)
    return found


class Gateway(FastAPI):
    """FastAPI, with the streaming routes served in the lane (see the module docstring)."""

    def __init__(self, *args: Any, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_body_bytes = max_body_bytes
        self.lane_endpoints: dict[str, LaneEndpoint] = {}

    def serve_in_lane(self, path: str, endpoint: LaneEndpoint) -> None:
        self.lane_endpoints[path] = endpoint
        self.middleware_stack = None  # rebuilt on the next request

    def build_middleware_stack(self) -> ASGIApp:
        full = super().build_middleware_stack()
        if not self.lane_endpoints:
            return full
        lanes: dict[str, ASGIApp] = {}
        for path, endpoint in self.lane_endpoints.items():
            route, guards = _route_of(self, path)
            app: ASGIApp = _Endpoint(self, route, guards, endpoint)
            for cls, args, kwargs in reversed(self.user_middleware):
                app = cls(app, *args, **kwargs)
            lanes[path] = app
        return Dispatch(full, lanes, self.lane_endpoints, self.max_body_bytes)


class Dispatch:
    """Outermost: a lane request to its lane, everything else to the full FastAPI stack."""

    def __init__(
        self,
        full: ASGIApp,
        lanes: dict[str, ASGIApp],
        endpoints: Mapping[str, LaneEndpoint],
        max_body_bytes: int,
    ) -> None:
        self.full = full
        self.lanes = lanes
        self.endpoints = endpoints
        self.max_body_bytes = max_body_bytes
        self.lane_requests = 0  # how many requests the lane answered (read by tests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lanes.get(scope["path"]) if scope["type"] == "http" else None
        if lane is None or scope["method"] != "POST" or not self._small(scope):
            await self.full(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left before its body arrived: nobody to answer
        replay = _Replay(body, receive)
        parsed = self.endpoints[scope["path"]].parse(body, scope)
        if parsed is None:
            await self.full(scope, replay, send)  # the route answers, in its own words
            return
        scope[_PARSED] = parsed
        self.lane_requests += 1
        await lane(scope, replay, send)

    def _small(self, scope: Scope) -> bool:
        """A declared length within the limit: read whole here at no risk (else: full stack)."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                return bool(value.isdigit() and int(value) <= self.max_body_bytes)
        return False


_PARSED = "llm_api.lane.parsed"


async def _read_body(receive: Receive) -> bytes | None:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # http.disconnect
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


@dataclass(slots=True)
class _Replay:
    """The body once, as one message; then the connection's own messages (disconnects)."""

    body: bytes | None
    receive: Receive

    async def __call__(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self.receive()


class _Endpoint:
    """Inside the app's middleware: the route's guards, then its answer; errors mapped."""

    def __init__(self, app: FastAPI, route: Any, guards: list[Guard], lane: LaneEndpoint) -> None:
        self.app = app
        self.route = route
        self.guards = guards
        self.lane = lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route  # the observer labels metrics and logs by its path
        scope["path_params"] = {}
        # The guard's message checks read json() of the same bytes with the same parser
        # as the route (llm_api.json_body).
        request = JsonRequest(scope, receive)
        try:
            for guard in self.guards:
                await guard(request)
            response = await self.lane.respond(request, scope[_PARSED])
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # as through FastAPI: uvicorn answers 500 and logs it
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(
        self, exc: Exception
    ) -> Callable[[Request, Exception], Awaitable[Response]] | None:
        """The app's handler for this exception (nearest class first), as Starlette picks."""
        handlers = self.app.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers and cls is not Exception:
                return handlers[cls]  # type: ignore[return-value]  # ours are all async
        return None
