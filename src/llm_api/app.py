"""The application factory. Nothing happens at import; the lifespan owns every client."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from llm_api.auth.guard import (
    PROTECTED_RESPONSES,
    Guard,
    ReleaseSlots,
    document_security,
    health_access,
)
from llm_api.auth.setup import install_security_middleware, security
from llm_api.chat.activity import SessionActivity
from llm_api.chat.router import ChatStreamLane
from llm_api.chat.router import router as chat_router
from llm_api.chat.service import ChatLimits, ChatService
from llm_api.chat.sessions_router import router as sessions_router
from llm_api.chat.store import open_store
from llm_api.chat.titles import TitleWriter
from llm_api.email.router import router as email_router
from llm_api.email.service import EmailLimits, EmailService
from llm_api.engine.client import EngineClient, EngineLimits
from llm_api.engine.models import ModelCatalog
from llm_api.health.router import router as health_router
from llm_api.health.service import HealthService
from llm_api.json_body import JsonContentType
from llm_api.lane import Gateway
from llm_api.limits import BodySizeLimit
from llm_api.logs import configure_logging
from llm_api.observability.middleware import RequestObserver
from llm_api.observability.router import prometheus_router
from llm_api.observability.router import router as observability_router
from llm_api.observability.service import observability
from llm_api.observability.tracing import FASTAPI_NATIVE_TELEMETRY, install_tracing
from llm_api.openai.router import CompletionsLane
from llm_api.openai.router import router as openai_router
from llm_api.openai.service import OpenAIRelay, RelayLimits
from llm_api.people.admin_router import router as people_admin_router
from llm_api.people.keys_router import router as own_keys_router
from llm_api.people.router import proxied as auth_proxied_router
from llm_api.people.router import public as auth_public_router
from llm_api.people.router import signed_in as auth_signed_in_router
from llm_api.people.service import People
from llm_api.people.store import PeopleStore
from llm_api.responses import install_error_handlers
from llm_api.settings import Settings, load_settings
from llm_api.state import STATE_KEY, AppState
from llm_api.webapp.router import router as webapp_router


def engine_limits(settings: Settings) -> EngineLimits:
    return EngineLimits(
        base_url=settings.engine_base_url,
        request_timeout=settings.request_timeout,
        health_timeout=settings.health_check_timeout,
        pool_size=settings.connection_pool_size,
        keepalive_expiry=settings.keepalive_expiry,
        background_priority=settings.background_priority,
        background_slots=settings.background_slot_cap,
    )


def settle_heap() -> None:
    """Once everything has started, move the start-up heap out of the garbage collector's way.

    A worker holds some 120,000 long-lived objects from imports and start-up (FastAPI,
    pydantic, SQLAlchemy, the clients). A full collection walks all of them, measured at
    ~60 ms on a 2-core VM: a pause that every stream of the worker feels as a gap. Frozen
    (``gc.freeze``), they are never walked again and a full collection sees only what was
    made since. (``gc.unfreeze`` on shutdown.)
    """
    gc.collect()
    gc.freeze()


def build_lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[Any]]:
    """The one place the app's state is built: clients, store, services, in order; closed in
    the reverse order on shutdown, or as far as start-up got when a step fails."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, AppState]]:
        async with AsyncExitStack() as stack:
            engine = await stack.enter_async_context(EngineClient(engine_limits(settings)))
            store = await open_store(
                settings.database_url,
                settings.data_dir,
                busy_timeout=settings.database_busy_timeout,
            )
            stack.push_async_callback(store.close)
            models = ModelCatalog(engine, settings.model_name)
            titles = TitleWriter(engine, models, store) if settings.chat_titles else None
            if titles is not None:
                stack.push_async_callback(titles.close)
            chat = ChatService(
                engine,
                models,
                ChatLimits(
                    settings.default_max_tokens,
                    settings.max_tokens_cap,
                    max_model_len=settings.max_model_len,
                    flush_seconds=settings.chat_flush_seconds,
                ),
                store,
                titles,
            )
            chat.start()
            stack.push_async_callback(chat.close)
            activity = SessionActivity(store, settings.active_session_minutes)
            observed = await stack.enter_async_context(
                observability(settings, engine, store.db, activity.active_count)
            )
            secured = await stack.enter_async_context(security(settings, store.db))
            people = People(settings, PeopleStore(store.engine))
            stack.push_async_callback(people.close)
            state = AppState(
                settings=settings,
                engine=engine,
                models=models,
                db=store.db,
                sessions=store,
                chat=chat,
                email=EmailService(engine, models, EmailLimits.from_settings(settings)),
                health=HealthService(engine, activity),
                keys=secured.keys,
                key_limits=secured.key_limits,
                engine_gate=secured.engine_gate,
                people=people,
                request_log=observed.request_log,
                metrics=observed.metrics,
                openai=OpenAIRelay(
                    engine,
                    models,
                    RelayLimits(settings.default_max_tokens, settings.max_tokens_cap),
                ),
            )
            settle_heap()
            stack.callback(gc.unfreeze)
            yield {STATE_KEY: state}

    return lifespan


def create_app(settings: Settings | None = None) -> Gateway:
    settings = settings or load_settings()
    configure_logging(settings)

    app = Gateway(
        max_body_bytes=settings.max_body_bytes,
        title="PLG-AI LLM API",
        version="0.1.0",
        lifespan=build_lifespan(settings),
        docs_url="/docs" if settings.docs_on else None,
        redoc_url="/redoc" if settings.docs_on else None,
        openapi_url="/openapi.json" if settings.docs_on else None,
        telemetry=FASTAPI_NATIVE_TELEMETRY,  # off: tracing is install_tracing()'s alone
    )
    app.state.settings = settings
    install_error_handlers(app)

    # Access is decided per router, one guard each; tests/auth/test_access.py fails on any
    # route left open.
    def guard(scope: str, *, sizes: bool = False, slot: bool = False) -> Any:
        return [Depends(Guard(scope, sizes=sizes, slot=slot))]

    guarded = PROTECTED_RESPONSES
    # Routes are matched in order, and FastAPI's matching costs microseconds per route
    # tried: the streaming routes come first.
    chat_guard = guard("chat", sizes=True, slot=True)
    app.include_router(openai_router, dependencies=chat_guard, responses=guarded)
    app.include_router(chat_router, dependencies=chat_guard, responses=guarded)
    app.include_router(health_router, dependencies=[Depends(health_access)])
    app.include_router(sessions_router, dependencies=guard("chat"), responses=guarded)
    app.include_router(email_router, dependencies=guard("email", slot=True), responses=guarded)
    app.include_router(auth_public_router)
    app.include_router(auth_proxied_router)
    app.include_router(auth_signed_in_router)
    app.include_router(own_keys_router)
    admin = guard("admin")
    app.include_router(people_admin_router, dependencies=admin, responses=guarded)
    app.include_router(observability_router, dependencies=admin, responses=guarded)
    if settings.metrics_public:  # LLM_API_METRICS_PUBLIC: scrapers without a key, /metrics only
        app.include_router(prometheus_router)
    else:
        app.include_router(prometheus_router, dependencies=admin, responses=guarded)
    app.include_router(webapp_router)  # last: "/" and "/assets/*" only
    document_security(app)
    app.add_middleware(ReleaseSlots)  # innermost: after the response, the guards' slots
    app.add_middleware(JsonContentType)  # 415 for a body that is not JSON, before reading it
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_tracing(app, settings)  # LLM_API_OTLP_ENDPOINT only; inside the observer
    app.add_middleware(RequestObserver)  # sees every answer, 413s included
    install_security_middleware(app, settings)  # headers, CORS, trusted hosts: outermost
    # The streaming routes, with the same middleware and guards, minus FastAPI's route
    # machinery (llm_api/lane.py); they stay registered for OpenAPI and for bad requests.
    app.serve_in_lane("/v1/chat/completions", CompletionsLane())
    app.serve_in_lane("/api/chat/stream", ChatStreamLane())
    return app
