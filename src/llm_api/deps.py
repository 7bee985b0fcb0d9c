"""Typed dependencies: what a route needs, resolved from the app's lifespan state.

Every dependency is ``async def`` although none awaits: FastAPI runs a plain ``def``
dependency in a thread pool, and that thread hop per request showed in the relay profile.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from llm_api.auth.guard import PrincipalDep
from llm_api.chat.service import ChatService
from llm_api.chat.store import SessionStore
from llm_api.email.service import EmailService
from llm_api.health.service import HealthService
from llm_api.settings import Settings


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_chat_service(request: Request) -> ChatService:
    return cast(ChatService, request.state.chat_service)


async def get_email_service(request: Request) -> EmailService:
    return cast(EmailService, request.state.email_service)


async def get_session_store(request: Request) -> SessionStore:
    return cast(SessionStore, request.state.session_store)


async def get_owner(principal: PrincipalDep) -> str:
    """Whose conversations a request sees: the API key's name (the default owner when
    LLM_API_AUTH=disabled). Resolved through the same cached dependency as the scope check,
    so a route that forgets its router's guard still cannot see another key's sessions."""
    return principal.name


async def get_health_service(request: Request) -> HealthService:
    return cast(HealthService, request.state.health_service)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
HealthServiceDep = Annotated[HealthService, Depends(get_health_service)]
EmailServiceDep = Annotated[EmailService, Depends(get_email_service)]
SessionStoreDep = Annotated[SessionStore, Depends(get_session_store)]
OwnerDep = Annotated[str, Depends(get_owner)]
