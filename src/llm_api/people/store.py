"""Users, groups, membership, browser sessions and the audit trail, on the store's database."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from llm_api.chat.store import utcnow
from llm_api.errors import Conflict, NotFound, StoreUnavailable
from llm_api.observability.context import current_request
from llm_api.people.tables import audit_log, browser_sessions, group_members, groups, users

ROLES = ("admin", "member")
STATUSES = ("active", "disabled")
SOURCES = ("local", "ldap", "proxy")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    display_name: str
    email: str | None
    role: str
    status: str
    source: str
    password_hash: str | None
    groups: tuple[str, ...]
    created_at: datetime
    last_login_at: datetime | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "email": self.email,
            "role": self.role,
            "status": self.status,
            "source": self.source,
            "groups": list(self.groups),
            "created_at": self.created_at.isoformat(),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


@dataclass(frozen=True, slots=True)
class BrowserSession:
    id: int
    user: User
    csrf_token: str
    method: str


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _current_request_id() -> str | None:
    record = current_request()
    return record.request_id if record is not None else None


class PeopleStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # --- users ------------------------------------------------------------------------
    async def _groups_of(self, conn: Any, user_ids: list[int]) -> dict[int, tuple[str, ...]]:
        if not user_ids:
            return {}
        rows = await conn.execute(
            select(group_members.c.user_id, groups.c.name)
            .join(groups, groups.c.id == group_members.c.group_id)
            .where(group_members.c.user_id.in_(user_ids))
            .order_by(groups.c.name)
        )
        found: dict[int, list[str]] = {}
        for user_id, name in rows:
            found.setdefault(user_id, []).append(name)
        return {k: tuple(v) for k, v in found.items()}

    @staticmethod
    def _user(row: Any, names: tuple[str, ...]) -> User:
        return User(
            id=row.id,
            username=row.username,
            display_name=row.display_name,
            email=row.email,
            role=row.role,
            status=row.status,
            source=row.source,
            password_hash=row.password_hash,
            groups=names,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )

    async def _one(self, where: Any) -> User | None:
        try:
            async with self.engine.connect() as conn:
                row = (await conn.execute(select(users).where(where))).first()
                if row is None:
                    return None
                names = (await self._groups_of(conn, [row.id])).get(row.id, ())
        except DBAPIError:
            raise StoreUnavailable("the user store is unavailable; retry shortly") from None
        return self._user(row, names)

    async def by_username(self, username: str) -> User | None:
        return await self._one(users.c.username == username)

    async def get(self, user_id: int) -> User:
        user = await self._one(users.c.id == user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    async def list_users(self) -> list[User]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(users).order_by(users.c.id))).all()
            names = await self._groups_of(conn, [r.id for r in rows])
        return [self._user(r, names.get(r.id, ())) for r in rows]

    async def count_users(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())

    async def active_admin_count(self) -> int:
        query = (
            select(func.count())
            .select_from(users)
            .where(users.c.role == "admin", users.c.status == "active")
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def create_user(
        self,
        username: str,
        *,
        role: str,
        source: str,
        password_hash: str | None = None,
        display_name: str = "",
        email: str | None = None,
    ) -> User:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(users).values(
                        username=username,
                        display_name=display_name or username,
                        email=email,
                        role=role,
                        status="active",
                        source=source,
                        password_hash=password_hash,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            raise Conflict(f"a user named {username!r} exists") from None
        user = await self.by_username(username)
        assert user is not None  # noqa: S101 - just inserted
        return user

    async def update_user(self, user_id: int, **values: Any) -> User:
        if values:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(users).where(users.c.id == user_id).values(**values)
                )
            if not result.rowcount:
                raise NotFound("no such user")
        return await self.get(user_id)

    async def set_user_groups(self, user_id: int, names: tuple[str, ...]) -> None:
        """Make the user's groups exactly ``names`` (directory-provisioned users)."""
        async with self.engine.begin() as conn:
            for name in names:
                exists = (
                    await conn.execute(select(groups.c.id).where(groups.c.name == name))
                ).first()
                if exists is None:
                    await conn.execute(
                        insert(groups).values(name=name, description="", created_at=utcnow())
                    )
            wanted = {
                r.id
                for r in await conn.execute(select(groups.c.id).where(groups.c.name.in_(names)))
            }
            have = {
                r.group_id
                for r in await conn.execute(
                    select(group_members.c.group_id).where(group_members.c.user_id == user_id)
                )
            }
            if have - wanted:
                await conn.execute(
                    delete(group_members).where(
                        group_members.c.user_id == user_id,
                        group_members.c.group_id.in_(have - wanted),
                    )
                )
            for group_id in wanted - have:
                await conn.execute(insert(group_members).values(group_id=group_id, user_id=user_id))

    # --- groups -----------------------------------------------------------------------
    async def list_groups(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(groups).order_by(groups.c.name))).all()
            members = (await conn.execute(select(group_members))).all()
        by_group: dict[int, list[int]] = {}
        for m in members:
            by_group.setdefault(m.group_id, []).append(m.user_id)
        return [
            {
                "id": r.id,
                "name": r.name,
                "description": r.description,
                "member_ids": sorted(by_group.get(r.id, [])),
                "created_at": r.created_at.isoformat(),
            }
            for r in rows
        ]

    async def group(self, group_id: int) -> dict[str, Any]:
        for found in await self.list_groups():
            if found["id"] == group_id:
                return found
        raise NotFound("no such group")

    async def create_group(self, name: str, description: str) -> dict[str, Any]:
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    insert(groups).values(name=name, description=description, created_at=utcnow())
                )
        except IntegrityError:
            raise Conflict(f"a group named {name!r} exists") from None
        return await self.group(int(result.inserted_primary_key[0]))  # type: ignore[index]  # one key

    async def update_group(self, group_id: int, **values: Any) -> dict[str, Any]:
        if not values:
            return await self.group(group_id)
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(groups).where(groups.c.id == group_id).values(**values)
                )
        except IntegrityError:
            raise Conflict("a group with that name exists") from None
        if not result.rowcount:
            raise NotFound("no such group")
        return await self.group(group_id)

    async def delete_group(self, group_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(group_members).where(group_members.c.group_id == group_id))
            result = await conn.execute(delete(groups).where(groups.c.id == group_id))
        if not result.rowcount:
            raise NotFound("no such group")

    async def add_member(self, group_id: int, user_id: int) -> None:
        await self.group(group_id)
        await self.get(user_id)
        async with self.engine.begin() as conn:
            have = (
                await conn.execute(
                    select(group_members).where(
                        group_members.c.group_id == group_id, group_members.c.user_id == user_id
                    )
                )
            ).first()
            if have is None:
                await conn.execute(insert(group_members).values(group_id=group_id, user_id=user_id))

    async def remove_member(self, group_id: int, user_id: int) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(group_members).where(
                    group_members.c.group_id == group_id, group_members.c.user_id == user_id
                )
            )
        if not result.rowcount:
            raise NotFound("no such membership")

    # --- browser sessions -------------------------------------------------------------
    async def open_session(
        self, user_id: int, method: str, *, absolute: timedelta
    ) -> tuple[str, str]:
        """A new session for ``user_id``: (the cookie's token, the CSRF token). Only the
        token's hash is stored."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(browser_sessions).values(
                    token_hash=token_hash(token),
                    user_id=user_id,
                    csrf_token=csrf,
                    method=method,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + absolute,
                )
            )
            await conn.execute(update(users).where(users.c.id == user_id).values(last_login_at=now))
        return token, csrf

    async def resolve_session(
        self, token: str, *, idle: timedelta, touch_every: timedelta, with_groups: bool = True
    ) -> BrowserSession | None:
        """The live session of an active user ``token`` names, or None (one indexed join;
        no cache, so revocation and disabling take effect on the next request)."""
        now = utcnow()
        try:
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(browser_sessions, users)
                        .join(users, users.c.id == browser_sessions.c.user_id)
                        .where(browser_sessions.c.token_hash == token_hash(token))
                    )
                ).first()
                if row is None:
                    return None
                m = row._mapping
                alive = (
                    m[browser_sessions.c.revoked_at] is None
                    and m[browser_sessions.c.expires_at] > now
                    and m[browser_sessions.c.last_seen_at] + idle > now
                    and m[users.c.status] == "active"
                )
                if not alive:
                    return None
                # The guard needs no groups: one query per request instead of two.
                names = (
                    (await self._groups_of(conn, [m[users.c.id]])).get(m[users.c.id], ())
                    if with_groups
                    else ()
                )
        except DBAPIError:
            raise StoreUnavailable("the session store is unavailable; retry shortly") from None
        session_id = m[browser_sessions.c.id]
        if now - m[browser_sessions.c.last_seen_at] >= touch_every:
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        update(browser_sessions)
                        .where(browser_sessions.c.id == session_id)
                        .values(last_seen_at=now)
                    )
            except DBAPIError:
                pass  # best effort: the idle clock is kept at touch_every's resolution
        user = User(
            id=m[users.c.id],
            username=m[users.c.username],
            display_name=m[users.c.display_name],
            email=m[users.c.email],
            role=m[users.c.role],
            status=m[users.c.status],
            source=m[users.c.source],
            password_hash=None,
            groups=names,
            created_at=m[users.c.created_at],
            last_login_at=m[users.c.last_login_at],
        )
        return BrowserSession(
            session_id, user, m[browser_sessions.c.csrf_token], m[browser_sessions.c.method]
        )

    async def revoke_session(self, session_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(browser_sessions)
                .where(browser_sessions.c.id == session_id, browser_sessions.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )

    async def revoke_user_sessions(self, user_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(browser_sessions)
                .where(
                    browser_sessions.c.user_id == user_id, browser_sessions.c.revoked_at.is_(None)
                )
                .values(revoked_at=utcnow())
            )

    # --- audit --------------------------------------------------------------------------
    async def audit(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        address: str | None = None,
        request_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(audit_log).values(
                    at=utcnow(),
                    actor=actor,
                    action=action,
                    target=target,
                    address=address,
                    request_id=request_id or _current_request_id(),
                    detail=json.dumps(detail, ensure_ascii=False) if detail else None,
                )
            )

    async def audit_page(
        self,
        *,
        cursor: int | None,
        limit: int,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first; ``cursor`` is the id to continue below."""
        conditions = []
        if cursor is not None:
            conditions.append(audit_log.c.id < cursor)
        if actor is not None:
            conditions.append(audit_log.c.actor == actor)
        if action is not None:
            conditions.append(audit_log.c.action == action)
        if since is not None:
            conditions.append(audit_log.c.at >= since)
        if until is not None:
            conditions.append(audit_log.c.at < until)
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit + 1)
        if conditions:
            query = query.where(and_(*conditions))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        items = [
            {
                "id": r.id,
                "at": r.at.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "address": r.address,
                "request_id": r.request_id,
                "detail": json.loads(r.detail) if r.detail else None,
            }
            for r in rows[:limit]
        ]
        return items, (rows[limit - 1].id if len(rows) > limit else None)
