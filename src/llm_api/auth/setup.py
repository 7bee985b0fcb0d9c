"""Wiring for app.py: the security part of the lifespan and the outer middleware (headers,
CORS, hosts)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_api.auth.keys import KeyStore
from llm_api.auth.limits import (
    Counters,
    EngineGate,
    Gate,
    KeyLimits,
    SharedEngineGate,
    open_counters,
)
from llm_api.db.database import Database
from llm_api.settings import Settings

log = logging.getLogger(__name__)


# JSON and event streams never load anything: the strictest policy fits them.
_STRICT_CSP = b"default-src 'none'; frame-ancestors 'none'"
_DOCS_PATHS = ("/docs", "/redoc")


def engine_gate(settings: Settings, counters: Counters) -> Gate:
    """Shared by every worker when Redis is configured, else this process's own."""
    if settings.redis_url:
        return SharedEngineGate(
            counters,
            settings.max_concurrent_requests,
            settings.max_queue,
            settings.queue_timeout,
            ttl=int(settings.request_timeout) + 60,
        )
    return EngineGate(settings.max_concurrent_requests, settings.max_queue, settings.queue_timeout)


@dataclass(frozen=True, slots=True)
class Security:
    keys: KeyStore
    key_limits: KeyLimits
    engine_gate: Gate


@asynccontextmanager
async def security(settings: Settings, db: Database) -> AsyncIterator[Security]:
    """Lifespan part: the key store, per-key counters and the engine gate."""
    counters = open_counters(settings.redis_url)
    if not settings.auth_required:
        log.warning("API keys are not checked (LLM_API_AUTH=disabled)")
    try:
        yield Security(
            keys=KeyStore(db),
            key_limits=KeyLimits(counters, stream_ttl=int(settings.request_timeout) + 60),
            engine_gate=engine_gate(settings, counters),
        )
    finally:
        await counters.close()


class SecurityHeaders:
    """nosniff everywhere; no-store and a strict CSP on API answers (not on the docs page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = str(scope.get("path", "")).startswith(_DOCS_PATHS)

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if not docs:
                    headers.append((b"x-frame-options", b"DENY"))
                    if b"content-security-policy" not in names:  # the web app sets its own
                        headers.append((b"content-security-policy", _STRICT_CSP))
                    if b"cache-control" not in names:
                        headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secured_send)


def install_security_middleware(app: FastAPI, settings: Settings) -> None:
    """Outermost layers, so that every answer (413, 401, 404, host errors) gets them."""
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    if settings.cors_origins:
        wildcard = "*" in settings.cors_origins
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # Never "*" together with credentials: a wildcard list gets no credentials.
            allow_credentials=not wildcard,
            allow_methods=settings.cors_methods,  # LLM_API_CORS_METHODS
            allow_headers=settings.cors_headers,  # LLM_API_CORS_HEADERS
            expose_headers=["X-Session-ID", "X-Request-ID", "Retry-After"],
        )
    app.add_middleware(SecurityHeaders)
