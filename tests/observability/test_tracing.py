"""OpenTelemetry tracing: spans reach a real OTLP/HTTP receiver when configured, and with
``LLM_API_OTLP_ENDPOINT`` unset nothing is installed, imported or sent."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from llm_api.app import create_app
from llm_api.observability.otel import Tracing
from tests.auth.conftest import bearer, make_key, secured_settings
from tests.conftest import REPO, gateway_settings, serve_gateway
from tests.fakes import FakeEngine

HEBREW = "שלום, מה נשמע?"
SERVER, CLIENT = Span.SpanKind.SPAN_KIND_SERVER, Span.SpanKind.SPAN_KIND_CLIENT
CALLER_TRACE_ID, CALLER_SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
SECRET = "plg_canary_0123456789abcdef"


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver on loopback that keeps what it is sent."""

    url: str = ""
    posts: list[ExportTraceServiceRequest] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)

    async def traces(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        body = await request.read()
        self.raw.append(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.posts.append(message)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        """(resource attributes, span) for every span received."""
        found: list[tuple[dict[str, Any], Span]] = []
        for post in self.posts:
            for resource_spans in post.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found


def attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        out[pair.key] = plain(pair.value)
    return out


def plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(plain(item) for item in value.array_value.values)
    return getattr(value, kind or "string_value")


@asynccontextmanager
async def running_collector() -> AsyncIterator[Collector]:
    collector = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", collector.traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    collector.url = f"http://127.0.0.1:{port}"
    try:
        yield collector
    finally:
        await runner.cleanup()


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    async with running_collector() as running:
        yield running


def middleware_names(app: FastAPI) -> list[str]:
    return [getattr(m.cls, "__name__", repr(m.cls)) for m in app.user_middleware]


def status_of(attrs: dict[str, Any]) -> int:
    return int(attrs.get("http.response.status_code", attrs.get("http.status_code", 0)))


def url_of(attrs: dict[str, Any]) -> str:
    return str(attrs.get("url.full", attrs.get("http.url", "")))


async def test_spans_for_requests_and_engine_calls_reach_the_collector(
    collector: Collector, fake_engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An operator asks for every request header on spans: keys must still not leave.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    settings = gateway_settings(
        fake_engine.url,
        data_dir=tmp_path,
        otlp_endpoint=collector.url,
        health_sample_seconds=0.05,  # engine probes with no request around them
    )
    body = {"model": "default", "messages": [{"role": "user", "content": HEBREW}]}
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        plain = await http.post(
            "/v1/chat/completions",
            json=body,
            headers={"X-Request-ID": "trace-plain-1", "X-API-Key": SECRET, "Cookie": SECRET},
        )
        assert plain.status_code == 200
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            json={**body, "stream": True},
            headers={"X-Request-ID": "trace-stream-1"},
        ) as streamed:
            await streamed.aread()
        missing = await http.get(
            "/api/sessions/chat_abcdefghijkl",
            headers={"X-Request-ID": "trace-404-1", "traceparent": CALLER_TRACEPARENT},
        )
        assert missing.status_code == 404
        assert collector.posts == []  # batched: nothing is sent on the request path
    # The lifespan's end sends what is queued.
    spans = collector.spans()
    assert set(collector.content_types) == {"application/x-protobuf"}
    assert spans, "no span reached the collector"
    assert {resource["service.name"] for resource, _ in spans} == {"llm-api"}

    servers = {}
    for _, span in spans:
        attrs = attributes(span.attributes)
        if span.kind == SERVER:
            servers[attrs["llm_api.request_id"]] = (span, attrs)
    assert set(servers) == {"trace-plain-1", "trace-stream-1", "trace-404-1"}

    chat_url = f"{fake_engine.url}/v1/chat/completions"
    for request_id in ("trace-plain-1", "trace-stream-1"):
        server, attrs = servers[request_id]
        assert server.name == "POST /v1/chat/completions"
        assert attrs["http.route"] == "/v1/chat/completions"
        assert status_of(attrs) == 200
        in_trace = [span for _, span in spans if span.trace_id == server.trace_id]
        # The request's span and its engine calls (the chat call; /v1/models and, on
        # llama-server, /props when the model catalog looks the served model and its
        # per-slot context up): no per-chunk send/receive spans.
        assert [span.kind for span in in_trace].count(SERVER) == 1
        engine_calls = [span for span in in_trace if span.kind == CLIENT]
        assert len(engine_calls) == len(in_trace) - 1
        assert all(span.parent_span_id == server.span_id for span in engine_calls)
        urls = [url_of(attributes(span.attributes)) for span in engine_calls]
        assert urls.count(chat_url) == 1, urls
        assert set(urls) <= {chat_url, f"{fake_engine.url}/v1/models", f"{fake_engine.url}/props"}
        chat = engine_calls[urls.index(chat_url)]
        assert status_of(attributes(chat.attributes)) == 200
        assert server.start_time_unix_nano <= chat.start_time_unix_nano
        assert chat.end_time_unix_nano <= server.end_time_unix_nano

    headers = servers["trace-plain-1"][1]
    assert headers["http.request.header.x_request_id"] == ("trace-plain-1",)  # captured
    assert headers["http.request.header.x_api_key"] == ("[REDACTED]",)
    assert headers["http.request.header.cookie"] == ("[REDACTED]",)
    assert not any(SECRET.encode() in body for body in collector.raw)

    server, attrs = servers["trace-404-1"]
    assert server.name == "GET /api/sessions/{session_id}"  # the template, never the raw id
    assert status_of(attrs) == 404
    # The caller's traceparent is honoured: the request joins the caller's trace.
    assert server.trace_id.hex() == CALLER_TRACE_ID
    assert server.parent_span_id.hex() == CALLER_SPAN_ID
    # Every span belongs to a request's trace: the health probes started none.
    roots = [span for _, span in spans if not span.parent_span_id]
    assert len(roots) == 2
    assert {span.kind for span in roots} == {SERVER}


async def test_spans_carry_the_key_name_never_the_key(
    collector: Collector, fake_engine: FakeEngine, tmp_path: Path
) -> None:
    settings = secured_settings(fake_engine.url, data_dir=tmp_path, otlp_endpoint=collector.url)
    key = await make_key(settings, "tracer", "chat")
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/v1/models", headers=bearer(key))).status_code == 200
        assert (await http.get("/v1/models")).status_code == 401
    servers = {
        attrs["llm_api.request_id"]: attrs
        for attrs in (attributes(span.attributes) for _, span in collector.spans())
        if "llm_api.request_id" in attrs
    }
    assert sorted(status_of(a) for a in servers.values()) == [200, 401]
    assert [a.get("llm_api.key_name") for a in servers.values() if status_of(a) == 200] == [
        "tracer"
    ]
    assert not any("llm_api.key_name" in a for a in servers.values() if status_of(a) == 401)
    assert not any(key.encode() in body for body in collector.raw)


async def test_unset_endpoint_installs_and_sends_nothing(
    collector: Collector,
    fake_engine: FakeEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Even OpenTelemetry's own variables pointing at a collector change nothing.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{collector.url}/v1/traces")
    settings = gateway_settings(fake_engine.url, data_dir=tmp_path, health_sample_seconds=0.05)
    assert settings.otlp_endpoint is None
    untraced = middleware_names(create_app(settings))
    traced_app = create_app(gateway_settings(fake_engine.url, otlp_endpoint=collector.url))
    try:
        # The same stack plus one middleware, just inside the request observer (which binds
        # the request id the span carries): what tracing adds when it is on.
        traced = middleware_names(traced_app)
        assert [name for name in traced if name != "TracingMiddleware"] == untraced
        assert traced[traced.index("RequestObserver") + 1] == "TracingMiddleware"
    finally:
        for m in traced_app.user_middleware:  # never served: stop its exporter thread here
            tracing = m.kwargs.get("tracing")
            if isinstance(tracing, Tracing):
                tracing.provider.shutdown()
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert not AioHttpClientInstrumentor().is_instrumented_by_opentelemetry
        body = {"model": "default", "messages": [{"role": "user", "content": HEBREW}]}
        assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
    assert collector.posts == []


_FRESH_PROCESS_CHECK = """
import asyncio, sys
import httpx
from llm_api.app import create_app
from llm_api.settings import Settings

app = create_app(Settings(engine_url=sys.argv[1]))
tracing_parts = (
    "llm_api.observability.otel",
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter",
    "opentelemetry.instrumentation",
)
print("loaded:", sorted(m for m in sys.modules if m.startswith(tracing_parts)))

# Something else in the process configures OpenTelemetry globally: still no spans.
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

async def ping() -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        return (await http.get("/ping")).status_code

print("ping:", asyncio.run(ping()))
print("spans:", [span.name for span in exporter.get_finished_spans()])
"""


def test_unset_endpoint_loads_no_sdk_and_traces_nothing(fake_engine: FakeEngine) -> None:
    """In a fresh interpreter (this one has loaded them): the tracing SDK, the exporter and
    the instrumentations stay unloaded (FastAPI imports the OpenTelemetry API, and redis-py
    the metrics SDK, by themselves), and a global tracer provider set by someone else does
    not make FastAPI's own OpenTelemetry bridge trace requests."""
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS_CHECK, fake_engine.url],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == ["loaded: []", "ping: 200", "spans: []"]
