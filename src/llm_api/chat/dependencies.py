"""What the chat and sessions routes need, read from the app's typed state.

Every dependency is ``async def`` although none awaits: FastAPI runs a plain ``def``
dependency in a thread pool, and that thread hop per request showed in the relay profile.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llm_api.auth.guard import PrincipalDep
from llm_api.chat.service import ChatService
from llm_api.chat.store import SessionStore
from llm_api.settings import Settings
from llm_api.state import AppState


async def get_settings(request: Request) -> Settings:
    return AppState.of(request).settings


async def get_chat_service(request: Request) -> ChatService:
    return AppState.of(request).chat


async def get_session_store(request: Request) -> SessionStore:
    return AppState.of(request).sessions


async def get_owner(principal: PrincipalDep) -> str:
    """Whose conversations a request sees: the API key's name (the default owner when
    LLM_API_AUTH=disabled). Resolved through the same cached dependency as the scope check,
    so a route that forgets its router's guard still cannot see another key's sessions."""
    return principal.name


SettingsDep = Annotated[Settings, Depends(get_settings)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
SessionStoreDep = Annotated[SessionStore, Depends(get_session_store)]
OwnerDep = Annotated[str, Depends(get_owner)]
