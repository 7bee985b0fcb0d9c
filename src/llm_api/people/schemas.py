"""Request and response bodies of the people API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

USERNAME = r"^[A-Za-z0-9\u0590-\u05FF][A-Za-z0-9\u0590-\u05FF._@\-*()=\\ ]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(Strict):
    # Permissive enough that LDAP metacharacters reach the (escaping) directory search;
    # longer than 64 characters or with control characters is a 422.
    username: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    password: str = Field(min_length=1, max_length=1024)


class UserPublic(BaseModel):
    id: int
    username: str
    display_name: str
    email: str | None
    role: Literal["admin", "member"]
    status: Literal["active", "disabled"]
    source: Literal["local", "ldap", "proxy"]
    groups: list[str]
    created_at: str
    last_login_at: str | None


class SignedInPublic(BaseModel):
    user: UserPublic
    csrf_token: str


class AuthMethods(BaseModel):
    local: bool
    ldap: bool
    proxy: bool


class UserCreate(Strict):
    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@\-]{0,63}$")
    password: str | None = Field(default=None, max_length=1024)
    role: Literal["admin", "member"] = "member"
    display_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)


class UserUpdate(Strict):
    role: Literal["admin", "member"] | None = None
    status: Literal["active", "disabled"] | None = None
    display_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    password: str | None = Field(default=None, max_length=1024)


class UserList(BaseModel):
    users: list[UserPublic]


class GroupCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=500)


class GroupUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=500)


class GroupPublic(BaseModel):
    id: int
    name: str
    description: str
    member_ids: list[int]
    created_at: str


class GroupList(BaseModel):
    groups: list[GroupPublic]


class AuditItem(BaseModel):
    id: int
    at: str
    actor: str | None
    action: str
    target: str | None
    address: str | None
    request_id: str | None
    detail: dict[str, object] | None


class AuditPage(BaseModel):
    items: list[AuditItem]
    next_cursor: str | None
