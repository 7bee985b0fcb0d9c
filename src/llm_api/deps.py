"""Typed dependencies: what a route needs, resolved from the app's lifespan state."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from llm_api.chat.service import ChatService
from llm_api.email.service import EmailService
from llm_api.health.service import HealthService
from llm_api.settings import Settings


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_chat_service(request: Request) -> ChatService:
    return cast(ChatService, request.state.chat_service)


def get_email_service(request: Request) -> EmailService:
    return cast(EmailService, request.state.email_service)


def get_health_service(request: Request) -> HealthService:
    return cast(HealthService, request.state.health_service)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
HealthServiceDep = Annotated[HealthService, Depends(get_health_service)]
EmailServiceDep = Annotated[EmailService, Depends(get_email_service)]
