"""``/api/sessions``: browse, rename, delete and export stored conversations."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from llm_api.chat import export
from llm_api.chat.dependencies import OwnerDep, SessionStoreDep
from llm_api.chat.schemas import SESSION_ID_PATTERN, SessionList, SessionPublic, SessionUpdate
from llm_api.json_body import JsonRoute
from llm_api.responses import json_response

router = APIRouter(prefix="/api/sessions", tags=["sessions"], route_class=JsonRoute)

SessionId = Annotated[str, Path(pattern=SESSION_ID_PATTERN)]
_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"description": "No such session"},
    503: {"description": "The conversation store is unavailable"},
}


@router.get("", response_model=SessionList)
async def list_sessions(
    store: SessionStoreDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Full-text search over your titles and messages; Hebrew points "
            "(niqqud), final letters and English case do not matter",
        ),
    ] = None,
) -> SessionList:
    page = await store.list_sessions(owner, limit=limit, before=before, q=q)
    return SessionList(
        sessions=[export.summary(info) for info in page.sessions], next=page.next_cursor
    )


@router.get("/{session_id}", response_model=SessionPublic, responses=_NOT_FOUND)
async def get_session(session_id: SessionId, store: SessionStoreDep, owner: OwnerDep) -> Response:
    history = await store.get_session(owner, session_id)
    return json_response(200, export.public(history).model_dump(mode="json"))


@router.patch("/{session_id}", response_model=SessionPublic, responses=_NOT_FOUND)
async def rename_session(
    session_id: SessionId, body: SessionUpdate, store: SessionStoreDep, owner: OwnerDep
) -> Response:
    history = await store.rename(owner, session_id, body.title)
    return json_response(200, export.public(history).model_dump(mode="json"))


@router.delete("/{session_id}", status_code=204, responses=_NOT_FOUND)
async def delete_session(
    session_id: SessionId, store: SessionStoreDep, owner: OwnerDep
) -> Response:
    await store.delete(owner, session_id)
    return Response(status_code=204)


@router.get("/{session_id}/export", responses=_NOT_FOUND)
async def export_session(
    session_id: SessionId,
    store: SessionStoreDep,
    owner: OwnerDep,
    format: Literal["json", "markdown"] = "json",
) -> Response:
    history = await store.get_session(owner, session_id)
    filename = f"{session_id}.{'md' if format == 'markdown' else 'json'}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "markdown":
        return Response(
            export.markdown(history), media_type="text/markdown; charset=utf-8", headers=headers
        )
    return json_response(200, export.public(history).model_dump(mode="json"), headers)
