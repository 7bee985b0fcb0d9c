"""The application's state: one typed object, built once by the lifespan (app.py).

Starlette copies what the lifespan yields into every request's ``request.state``; the
lifespan yields one entry, this object, and :meth:`AppState.of` reads it back with its type.
Each feature's dependencies (beside its router) take what they need from it, so a route
never sees a string-keyed dict. "engine" is the inference client; the database has its own
name (``db``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from llm_api.settings import Settings

if TYPE_CHECKING:  # the state points at every feature; nothing below imports it at run time
    from llm_api.auth.keys import KeyStore
    from llm_api.auth.limits import Gate, KeyLimits
    from llm_api.chat.service import ChatService
    from llm_api.chat.store import SessionStore
    from llm_api.db.database import Database
    from llm_api.email.service import EmailService
    from llm_api.engine.client import EngineClient
    from llm_api.engine.models import ModelCatalog
    from llm_api.health.service import HealthService
    from llm_api.observability.request_log import RequestLog
    from llm_api.observability.service import MetricsService
    from llm_api.openai.service import OpenAIRelay
    from llm_api.people.service import People

STATE_KEY = "app_state"


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    engine: EngineClient
    models: ModelCatalog
    db: Database
    sessions: SessionStore
    chat: ChatService
    email: EmailService
    health: HealthService
    keys: KeyStore
    key_limits: KeyLimits
    engine_gate: Gate
    people: People
    request_log: RequestLog
    metrics: MetricsService
    openai: OpenAIRelay

    @staticmethod
    def of(connection: HTTPConnection) -> AppState:
        state = getattr(connection.state, STATE_KEY, None)
        if not isinstance(state, AppState):
            raise TypeError("the app's lifespan has not run: no AppState on this request")
        return state


def settings_of(connection: HTTPConnection) -> Settings:
    """The app's settings, set by create_app before any request (the lifespan may not have
    run: ``/ping`` answers through a bare ASGI transport too)."""
    settings = getattr(connection.app.state, "settings", None)
    if not isinstance(settings, Settings):
        raise TypeError("create_app() sets app.state.settings; this app was built otherwise")
    return settings
