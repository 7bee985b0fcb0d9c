"""``/api/admin``: users, groups, membership and the audit trail (admins only: the
router gets the ``admin`` guard in app.py, for admin keys and admin browser sessions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from llm_api.auth.guard import PrincipalDep, client_address
from llm_api.errors import InvalidRequest
from llm_api.json_body import JsonRoute
from llm_api.observability.context import current_request
from llm_api.people.deps import PeopleDep
from llm_api.people.schemas import (
    AuditItem,
    AuditPage,
    GroupCreate,
    GroupList,
    GroupPublic,
    GroupUpdate,
    UserCreate,
    UserList,
    UserPublic,
    UserUpdate,
)
from llm_api.people.service import People
from llm_api.state import AppState

router = APIRouter(
    prefix="/api/admin",
    tags=["admin"],
    route_class=JsonRoute,
    responses={
        404: {"description": "No such user or group"},
        409: {"description": "The name is taken"},
    },
)
# Ids are 32-bit on both databases; a larger one is a 422, not a driver overflow.
Id = Annotated[int, Path(ge=1, le=2_147_483_647)]


async def _audit(
    people: People, request: Request, actor: str, action: str, target: str, **detail: object
) -> None:
    record = current_request()
    await people.store.audit(
        action,
        actor=actor,
        target=target,
        address=client_address(request),
        request_id=getattr(record, "request_id", None) if record is not None else None,
        detail=detail or None,
    )


@router.get("/users", response_model=UserList)
async def list_users(people: PeopleDep) -> UserList:
    return UserList(users=[UserPublic(**u.public()) for u in await people.store.list_users()])


@router.post("/users", response_model=UserPublic, status_code=201)
async def create_user(
    body: UserCreate, request: Request, people: PeopleDep, principal: PrincipalDep
) -> UserPublic:
    """A local user (with a password) or one a directory or proxy will sign in (without)."""
    password_hash = None
    if body.password is not None:
        people.passwords.check_policy(body.password, body.username)
        password_hash = await people.passwords.hash(body.password)
    user = await people.store.create_user(
        body.username, role=body.role, source="local", password_hash=password_hash,
        display_name=body.display_name, email=body.email,
    )  # fmt: skip
    await _audit(people, request, principal.name, "user_created", user.username, role=user.role)
    return UserPublic(**user.public())


@router.patch("/users/{user_id}", response_model=UserPublic)
async def update_user(
    user_id: Id, body: UserUpdate, request: Request, people: PeopleDep, principal: PrincipalDep
) -> UserPublic:
    """Role, status, name, email or password; disabling ends the user's sessions at once."""
    user = await people.store.get(user_id)
    values = body.model_dump(exclude_unset=True, exclude={"password"})
    if body.password is not None:
        if user.source != "local":
            raise InvalidRequest("only local users have a password here", param="password")
        people.passwords.check_policy(body.password, user.username)
        values["password_hash"] = await people.passwords.hash(body.password)
    updated = await people.store.update_user(user_id, **values)
    if body.status == "disabled" or body.password is not None:
        await people.store.revoke_user_sessions(user_id)
    changed = sorted(body.model_dump(exclude_unset=True))
    await _audit(people, request, principal.name, "user_updated", user.username,
                 fields=changed, role=updated.role, status=updated.status)  # fmt: skip
    return UserPublic(**updated.public())


@router.get("/keys")
async def list_all_keys(request: Request) -> dict[str, list[dict[str, object]]]:
    """Every key (never a secret): owner, prefix, scopes, last use, revoked."""
    keys = AppState.of(request).keys
    return {"keys": [k.public() for k in await keys.list()]}


@router.get("/groups", response_model=GroupList)
async def list_groups(people: PeopleDep) -> GroupList:
    return GroupList(groups=[GroupPublic(**g) for g in await people.store.list_groups()])


@router.post("/groups", response_model=GroupPublic, status_code=201)
async def create_group(
    body: GroupCreate, request: Request, people: PeopleDep, principal: PrincipalDep
) -> GroupPublic:
    group = await people.store.create_group(body.name, body.description)
    await _audit(people, request, principal.name, "group_created", body.name)
    return GroupPublic(**group)


@router.patch("/groups/{group_id}", response_model=GroupPublic)
async def update_group(
    group_id: Id, body: GroupUpdate, request: Request, people: PeopleDep, principal: PrincipalDep
) -> GroupPublic:
    group = await people.store.update_group(group_id, **body.model_dump(exclude_unset=True))
    await _audit(people, request, principal.name, "group_updated", group["name"])
    return GroupPublic(**group)


@router.delete("/groups/{group_id}", status_code=204)
async def delete_group(
    group_id: Id, request: Request, people: PeopleDep, principal: PrincipalDep
) -> Response:
    group = await people.store.group(group_id)
    await people.store.delete_group(group_id)
    await _audit(people, request, principal.name, "group_deleted", group["name"])
    return Response(status_code=204)


@router.put("/groups/{group_id}/members/{user_id}", status_code=204)
async def add_member(
    group_id: Id, user_id: Id, request: Request, people: PeopleDep, principal: PrincipalDep
) -> Response:
    await people.store.add_member(group_id, user_id)
    await _audit(people, request, principal.name, "member_added", f"{group_id}:{user_id}")
    return Response(status_code=204)


@router.delete("/groups/{group_id}/members/{user_id}", status_code=204)
async def remove_member(
    group_id: Id, user_id: Id, request: Request, people: PeopleDep, principal: PrincipalDep
) -> Response:
    await people.store.remove_member(group_id, user_id)
    await _audit(people, request, principal.name, "member_removed", f"{group_id}:{user_id}")
    return Response(status_code=204)


@router.get("/audit", response_model=AuditPage)
async def audit(
    people: PeopleDep,
    *,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditPage:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    if cursor is not None and not cursor.isdigit():
        raise InvalidRequest("cursor: use the next_cursor of the previous page", param="cursor")
    items, following = await people.store.audit_page(
        cursor=int(cursor) if cursor else None, limit=limit, actor=actor, action=action,
        since=since, until=until,
    )  # fmt: skip
    return AuditPage(
        items=[AuditItem(**i) for i in items],
        next_cursor=str(following) if following is not None else None,
    )


@router.get("/audit/export", response_class=StreamingResponse)
async def audit_export(
    people: PeopleDep, since: datetime | None = None, until: datetime | None = None
) -> StreamingResponse:
    """The whole (filtered) audit trail as JSON lines, oldest page last."""

    async def lines() -> AsyncIterator[bytes]:
        cursor = None
        while True:
            items, cursor = await people.store.audit_page(
                cursor=cursor, limit=500, since=since, until=until
            )
            for item in items:
                yield orjson.dumps(item) + b"\n"
            if cursor is None:
                return

    return StreamingResponse(lines(), media_type="application/x-ndjson")
