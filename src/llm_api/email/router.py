"""``/api/tasks/extract``, ``/api/summarization/summarize``, ``/api/title/generate``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from llm_api.email.schemas import (
    SummarizeRequest,
    SummaryPublic,
    TaskExtractRequest,
    TaskPublic,
    TitlePublic,
    TitleRequest,
)
from llm_api.email.service import EmailService
from llm_api.json_body import JsonRoute
from llm_api.state import AppState

router = APIRouter(tags=["email"], route_class=JsonRoute)


async def get_email_service(request: Request) -> EmailService:
    return AppState.of(request).email


EmailServiceDep = Annotated[EmailService, Depends(get_email_service)]

_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    413: {"description": "The email is longer than LLM_API_MAX_EMAIL_CHARS"},
    422: {"description": "Invalid request"},
    502: {"description": "The model gave no valid answer, even after a retry"},
    503: {"description": "The inference engine is unavailable"},
    504: {"description": "The inference engine did not answer in time"},
}


@router.post("/api/tasks/extract", responses=_ERROR_RESPONSES)
async def extract_tasks(body: TaskExtractRequest, service: EmailServiceDep) -> list[TaskPublic]:
    return await service.extract_tasks(body.email_content, body.language)


@router.post("/api/summarization/summarize", responses=_ERROR_RESPONSES)
async def summarize(body: SummarizeRequest, service: EmailServiceDep) -> SummaryPublic:
    return await service.summarize(body.email_content, body.length, body.language)


@router.post("/api/title/generate", responses=_ERROR_RESPONSES)
async def generate_title(body: TitleRequest, service: EmailServiceDep) -> TitlePublic:
    return await service.generate_title(body.user_message, body.language)
