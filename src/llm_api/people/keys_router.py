"""``/api/keys``: a signed-in person's own API keys (a browser session is the audience).

Another person's key answers exactly as a missing one (404). Scopes are never wider than
the person's role; the secret is returned once, by ``POST``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from llm_api.auth.guard import PrincipalDep, SignedInGuard, client_address
from llm_api.auth.keys import ROLE_SCOPES, KeyStore
from llm_api.errors import Forbidden, NotFound
from llm_api.json_body import JsonRoute
from llm_api.people.deps import PeopleDep
from llm_api.state import AppState

router = APIRouter(
    prefix="/api/keys",
    tags=["keys"],
    route_class=JsonRoute,
    dependencies=[Depends(SignedInGuard())],
    responses={401: {"description": "not signed in"}, 404: {"description": "no such key"}},
)
Id = Annotated[int, Path(ge=1, le=2_147_483_647)]


Scope = Literal["chat", "email", "admin"]


def _member_scopes() -> list[Scope]:
    return ["chat", "email"]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scopes: list[Scope] = Field(default_factory=_member_scopes, min_length=1)


class KeyPublic(BaseModel):
    id: int
    owner: str
    prefix: str
    scopes: list[str]
    created_at: str
    last_used_at: str | None
    revoked: bool


class KeyCreated(KeyPublic):
    key: str = Field(description="The secret, shown this once only.")


class KeyList(BaseModel):
    keys: list[KeyPublic]


def _keys(request: Request) -> KeyStore:
    return AppState.of(request).keys


def _user_id(principal: PrincipalDep) -> int:
    assert principal.session is not None  # noqa: S101 - SignedInGuard admitted a session
    return principal.session.user.id


@router.get("", response_model=KeyList)
async def list_keys(request: Request, principal: PrincipalDep) -> KeyList:
    keys = await _keys(request).of_user(_user_id(principal))
    return KeyList(keys=[KeyPublic(**k.public()) for k in keys])


@router.post("", response_model=KeyCreated, status_code=201)
async def create_key(
    body: KeyCreate, request: Request, principal: PrincipalDep, people: PeopleDep
) -> KeyCreated:
    assert principal.session is not None  # noqa: S101 - SignedInGuard admitted a session
    user = principal.session.user
    scopes = frozenset(body.scopes)
    if not scopes <= ROLE_SCOPES.get(user.role, frozenset()):
        raise Forbidden("a key's scopes may not be wider than your role")
    raw, key = await _keys(request).create(user.username, scopes, user_id=user.id)
    await people.store.audit(
        "key_created", actor=user.username, target=f"key:{key.id}",
        address=client_address(request), detail={"prefix": key.prefix, "scopes": sorted(scopes)},
    )  # fmt: skip
    return KeyCreated(**key.public(), key=raw)


@router.delete("/{key_id}", status_code=204)
async def revoke_key(
    key_id: Id, request: Request, principal: PrincipalDep, people: PeopleDep
) -> Response:
    if not await _keys(request).revoke_own(key_id, _user_id(principal)):
        raise NotFound("no such key")
    await people.store.audit(
        "key_revoked", actor=principal.name, target=f"key:{key_id}",
        address=client_address(request),
    )  # fmt: skip
    return Response(status_code=204)
