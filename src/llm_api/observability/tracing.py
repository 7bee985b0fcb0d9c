"""Optional OpenTelemetry tracing: on only when ``LLM_API_OTLP_ENDPOINT`` is set.

Unset (the default), :func:`install_tracing` returns at once: the OpenTelemetry SDK is not
imported, no middleware is added, the engine client is not instrumented, no exporter thread
starts and nothing is sent anywhere. Set, it adds one middleware and wraps the lifespan; the
wiring itself is in :mod:`llm_api.observability.otel`.

FastAPI has an OpenTelemetry bridge of its own, on by default; app.py turns it off with
:data:`FASTAPI_NATIVE_TELEMETRY`. Left on, it looks the global providers up on every request
(about 15 us each on the 2-core test machine) and starts tracing, or with
``FASTAPI_OTEL_AUTO_CONFIGURE=true`` exporting, as soon as something in the process sets
them: tracing here is configured in one place, explicitly.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from llm_api.settings import Settings

FASTAPI_NATIVE_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "auto_configure": False,
}


def install_tracing(app: FastAPI, settings: Settings) -> None:
    """Trace every request (and its engine calls) when an OTLP endpoint is configured.

    Call it just before adding the request observer, so that the tracing middleware runs
    inside it: the request id is bound by then and lands on the span.
    """
    if settings.otlp_endpoint is None:
        return
    # OpenTelemetry loads only when tracing is on: no import cost for anyone else.
    from llm_api.observability.otel import Tracing, TracingMiddleware  # noqa: PLC0415

    tracing = Tracing(str(settings.otlp_endpoint), settings.otlp_service_name)
    app.add_middleware(TracingMiddleware, tracing=tracing)
    # The engine client's aiohttp session is made in the lifespan; instrumentation has to be
    # in place before that, and undone (with the last spans sent) after it has closed.
    app.router.lifespan_context = tracing.around(app.router.lifespan_context)
