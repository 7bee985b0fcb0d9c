"""OpenTelemetry wiring, imported only when ``LLM_API_OTLP_ENDPOINT`` is set (see tracing.py).

- One server span per HTTP request (OpenTelemetry's ASGI middleware), named
  ``METHOD /route/{template}`` once routing is done, with ``http.route``, the status, and
  ``llm_api.request_id`` (the ``X-Request-ID`` the response carries); ``llm_api.key_name``
  when a key was used. No per-chunk ``send`` spans: a stream is one span.
- Each engine call is a client span under it (the aiohttp-client instrumentation), which
  also passes ``traceparent`` on to the engine.
- Spans go in batches, from a background thread, to ``{endpoint}/v1/traces`` over OTLP/HTTP
  (protobuf). The standard ``OTEL_EXPORTER_OTLP_*`` variables for headers, timeout and
  compression apply; the endpoint is ours.
- Traces start at requests: a span with no parent that is not a request (the engine-health
  sampler's probe every few seconds) is not recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_api.observability.context import current_request

AppLifespan = Any  # Starlette's Lifespan[app] type, which FastAPI keeps on app.router

# Never copied onto a span, whatever OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* asks for.
_SECRET_HEADERS = ["authorization", "x-api-key", "cookie", "set-cookie"]


class _RequestsOnly(Sampler):
    """Root spans are recorded for requests (server spans) only."""

    def should_sample(  # noqa: PLR0917 - the signature is Sampler's
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.SERVER:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return "RequestsOnly"


class Tracing:
    """This process's tracer provider and exporter, and the aiohttp instrumentation."""

    def __init__(self, endpoint: str, service_name: str) -> None:
        base = endpoint.rstrip("/")
        self.traces_url = base if base.endswith("/v1/traces") else base + "/v1/traces"
        self.provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service_name}),
            sampler=ParentBased(root=_RequestsOnly()),
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=self.traces_url))
        )
        self._aiohttp = AioHttpClientInstrumentor()

    def around(self, inner: AppLifespan) -> AppLifespan:
        """The app's lifespan with the engine client instrumented for its whole life."""

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Mapping[str, Any] | None]:
            self._aiohttp.instrument(tracer_provider=self.provider)
            try:
                context: AbstractAsyncContextManager[Mapping[str, Any] | None] = inner(app)
                async with context as state:
                    yield state
            finally:
                self._aiohttp.uninstrument()
                # Sends what is still queued (blocking HTTP, bounded by the export timeout).
                await asyncio.to_thread(self.provider.shutdown)

        return lifespan


class TracingMiddleware:
    """OpenTelemetry's ASGI middleware around a step that names the span after routing."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self._app = OpenTelemetryMiddleware(
            _AfterRouting(app),
            default_span_details=_method_only,
            tracer_provider=tracing.provider,
            exclude_spans=["receive", "send"],
            http_capture_headers_sanitize_fields=_SECRET_HEADERS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _method_only(scope: Scope) -> tuple[str, dict[str, Any]]:
    # The raw path may hold ids (/api/sessions/chat_…): the name waits for the route template.
    return str(scope.get("method") or scope["type"]), {}


class _AfterRouting:
    """Names the span and adds the request's attributes as the response starts.

    Not after the app returns: OpenTelemetry's middleware ends the span as soon as the last
    body message is sent, and an ended span takes no more attributes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()
        if scope["type"] != "http" or not span.is_recording():
            await self.app(scope, receive, send)
            return
        done = False

        async def annotated_send(message: Message) -> None:
            nonlocal done
            if not done and message["type"] == "http.response.start":
                done = True
                _annotate(span, scope)
            await send(message)

        try:
            await self.app(scope, receive, annotated_send)
        finally:
            if not done:  # an exception: the span ends (with it recorded) after this
                _annotate(span, scope)


def _annotate(span: trace.Span, scope: Scope) -> None:
    route = getattr(scope.get("route"), "path", None)
    if isinstance(route, str):
        span.set_attribute("http.route", route)
        span.update_name(f"{scope['method']} {route}")
    record = current_request()
    if record is not None:
        span.set_attribute("llm_api.request_id", record.request_id)
        if record.key_name:
            span.set_attribute("llm_api.key_name", record.key_name)
