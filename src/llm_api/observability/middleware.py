"""The observer: request id, Prometheus metrics, one access-log line and one log row per request.

A pure ASGI middleware, so that streamed bodies pass through untouched and each event costs
two clock reads and one histogram update. For a server-sent-event response it also measures
time to the first event, the gaps between events, and the open-stream gauge.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_api.observability import metrics
from llm_api.observability.context import (
    RequestRecord,
    bind_request,
    request_id_from,
    unbind_request,
)
from llm_api.observability.request_log import RequestLogEntry
from llm_api.state import STATE_KEY, AppState

access_log = logging.getLogger("llm_api.access")

# Not "API requests" for the request log: monitoring polls would drown the real traffic.
_NOT_LOGGED = frozenset({"/api/metrics", "/api/health"})
_LOGGED_PREFIXES = ("/api/", "/v1/")


def counts_as_api_request(route: str) -> bool:
    return route.startswith(_LOGGED_PREFIXES) and route not in _NOT_LOGGED


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class RequestObserver:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(
            request_id=request_id_from(_header(scope, b"x-request-id")),
            method=scope["method"],
            path=scope["path"],
        )
        token = bind_request(record)
        streaming = False
        completed = False
        last_event = 0.0
        gap_child: Any = None  # the route's gap histogram, once the first event is out

        async def observed_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not completed:
                record.client_disconnected = True
            return message

        async def observed_send(message: Message) -> None:
            nonlocal streaming, completed, last_event, gap_child
            if message["type"] == "http.response.body":
                if streaming and message.get("body"):
                    now = time.perf_counter()
                    if gap_child is None:
                        gap_child = _first_event(scope, record, now)
                    else:
                        gap_child.observe(now - last_event)
                    last_event = now
                if not message.get("more_body", False):
                    completed = True
            elif message["type"] == "http.response.start":
                streaming, message = _on_start(scope, record, message)
            try:
                await send(message)
            except OSError:
                record.client_disconnected = True
                raise

        try:
            await self.app(scope, observed_receive, observed_send)
        except BaseException:
            if record.status == 0:
                record.status = 500  # ServerErrorMiddleware, outside us, answers 500
            raise
        finally:
            unbind_request(token)
            record.route = _route_of(scope)
            record.latency = time.perf_counter() - record.started
            if streaming:
                metrics.child(metrics.STREAMS_IN_FLIGHT, record.route).dec()
            if not completed and record.status < 500:
                record.client_disconnected = True
            _finish(scope, record)


def _first_event(scope: Scope, record: RequestRecord, now: float) -> Any:
    route = _route_of(scope)
    record.route = route
    record.first_event_after = now - record.started
    metrics.child(metrics.TIME_TO_FIRST_TOKEN, route).observe(record.first_event_after)
    return metrics.child(metrics.INTER_TOKEN_GAP, route)


def _on_start(scope: Scope, record: RequestRecord, message: Message) -> tuple[bool, Message]:
    """Note status and session, add X-Request-ID; True when the response is an SSE stream."""
    record.status = message["status"]
    streaming = False
    headers = list(message.get("headers", ()))
    for key, value in headers:
        if key == b"content-type" and value.startswith(b"text/event-stream"):
            streaming = True
        elif key == b"x-session-id":
            record.session_id = value.decode("latin-1")
    headers.append((b"x-request-id", record.request_id.encode()))
    if streaming:
        metrics.child(metrics.STREAMS_IN_FLIGHT, _route_of(scope)).inc()
    return streaming, {**message, "headers": headers}


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _finish(scope: Scope, record: RequestRecord) -> None:
    route, status = record.route, record.status
    latency = record.latency or 0.0
    metrics.child(metrics.REQUESTS, route, record.method, str(status)).inc()
    metrics.child(metrics.REQUEST_SECONDS, route).observe(latency)
    if status in (429, 503):
        metrics.child(metrics.REJECTIONS, route, str(status)).inc()
    if record.client_disconnected:
        metrics.child(metrics.CLIENT_DISCONNECTS, route).inc()
    if record.prompt_tokens:
        metrics.child(metrics.PROMPT_TOKENS, route).inc(record.prompt_tokens)
    if record.completion_tokens:
        metrics.child(metrics.COMPLETION_TOKENS, route).inc(record.completion_tokens)

    error = status >= 500 or record.stream_error
    app_state = (scope.get("state") or {}).get(STATE_KEY)
    if isinstance(app_state, AppState) and counts_as_api_request(route):
        app_state.request_log.add(
            RequestLogEntry(
                ts=record.started_wall,
                request_id=record.request_id,
                route=route,
                method=record.method,
                status=status,
                latency=latency,
                error=error,
                key_name=record.key_name,
                session_id=record.session_id,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
            )
        )
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            "%s %s %d %.1f ms",
            record.method,
            route,
            status,
            latency * 1000,
            extra={
                "request_id": record.request_id,
                "key_name": record.key_name,
                "method": record.method,
                "route": route,
                "status": status,
                "latency_ms": round(latency * 1000, 2),
                "ttft_ms": None
                if record.first_event_after is None
                else round(record.first_event_after * 1000, 2),
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "model": record.model,
                "finish_reason": record.finish_reason,
                "error_type": record.error_type,
                "stream_error": record.stream_error,
                "client_disconnected": record.client_disconnected,
                "session_id": record.session_id,
            },
        )
