"""API keys: made once, stored as a SHA-256 hash plus a display prefix, checked every request.

A key is ``plg_`` + 43 URL-safe characters (256 random bits). Only its hash is stored, so
a leaked database leaks no usable key; the prefix (``plg_AbCdEfGh``) lets people tell keys
apart in ``llm-api keys list``. The owner of a key's conversations is the key's *name*, so
revoking alice's key and creating a new one for alice keeps her conversations.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from llm_api.db.database import Database
from llm_api.db.errors import ErrorWords
from llm_api.db.metadata import metadata
from llm_api.db.types import UTCDateTime, utcnow
from llm_api.errors import StoreUnavailable
from llm_api.people.tables import users
from llm_api.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "plg_"
DISPLAY_CHARS = 12  # "plg_" + 8 characters
SCOPES = ("chat", "email", "admin")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@\-]{0,63}$"
# last_used is a write; once a minute per key and process is enough to be useful.
_LAST_USED_EVERY = timedelta(minutes=1)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("key_hash", LargeBinary(32), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("rpm", Integer, nullable=True),
    Column("max_streams", Integer, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("user_id", Integer, nullable=True),  # the person the key belongs to (0007)
    Index("ix_api_keys_name", "name"),
    Index("ix_api_keys_user", "user_id"),
)


_WORDS = ErrorWords(unavailable="the key store is unavailable; retry shortly")


class KeyAdminError(Exception):
    """An operator mistake in ``llm-api keys``: the message says what to do."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    rpm: int | None
    max_streams: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    user_id: int | None = None

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "owner": self.name,
            "prefix": self.prefix,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked": self.revoked,
        }


def hash_key(raw: str) -> bytes:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = scopes - set(SCOPES)
    if unknown or not scopes:
        raise KeyAdminError(f"scopes must be a comma-separated subset of {','.join(SCOPES)}")
    return scopes


def _row(row: object) -> ApiKey:
    return ApiKey(
        id=row.id,  # type: ignore[attr-defined]  # SQLAlchemy Row attributes
        name=row.name,  # type: ignore[attr-defined]
        prefix=row.prefix,  # type: ignore[attr-defined]
        scopes=frozenset(row.scopes.split(",")),  # type: ignore[attr-defined]
        rpm=row.rpm,  # type: ignore[attr-defined]
        max_streams=row.max_streams,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        last_used_at=row.last_used_at,  # type: ignore[attr-defined]
        revoked=row.revoked,  # type: ignore[attr-defined]
        user_id=row.user_id,  # type: ignore[attr-defined]
    )


ROLE_SCOPES = {"admin": frozenset(SCOPES), "member": frozenset(("chat", "email"))}


async def _owner_for(conn: AsyncConnection, name: str, scopes: frozenset[str]) -> int:
    """The user a key named ``name`` belongs to, made (no password) if there is none."""
    found = (await conn.execute(select(users.c.id).where(users.c.username == name))).first()
    if found is not None:
        return int(found.id)
    result = await conn.execute(
        insert(users).values(
            username=name, display_name=name, role="admin" if "admin" in scopes else "member",
            status="active", source="local", created_at=utcnow(),
        )
    )  # fmt: skip
    return int(result.inserted_primary_key[0])  # type: ignore[index]  # one key column


class KeyStore:
    """The ``api_keys`` table, on the conversation store's database (one migration chain,
    one write path)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._touched: dict[int, datetime] = {}

    async def create(
        self,
        name: str,
        scopes: frozenset[str],
        *,
        rpm: int | None = None,
        max_streams: int | None = None,
        user_id: int | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key; the raw key is returned here and never stored or shown again.

        With ``user_id`` (a person's own key, ``POST /api/keys``) a person may hold several;
        the operator's ``llm-api keys create`` keeps one active key per name and links the key
        to the user of that name, making that user (no password) if there is none.
        """
        raw = new_key()
        async with self.db.write(_WORDS) as conn:
            if user_id is None:
                active = await conn.execute(
                    select(api_keys.c.id).where(api_keys.c.name == name, ~api_keys.c.revoked)
                )
                if active.first() is not None:
                    raise KeyAdminError(f"an active key named {name!r} exists; revoke it first")
                user_id = await _owner_for(conn, name, scopes)
            await conn.execute(
                insert(api_keys).values(
                    name=name,
                    key_hash=hash_key(raw),
                    prefix=raw[:DISPLAY_CHARS],
                    scopes=",".join(sorted(scopes)),
                    rpm=rpm,
                    max_streams=max_streams,
                    created_at=utcnow(),
                    revoked=False,
                    user_id=user_id,
                )
            )
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.key_hash == hash_key(raw)))
            ).one()
        return raw, _row(row)

    async def list(self) -> list[ApiKey]:
        async with self.db.read(_WORDS) as conn:
            rows = await conn.execute(select(api_keys).order_by(api_keys.c.id))
            return [_row(r) for r in rows]

    async def active_count(self) -> int:
        async with self.db.read(_WORDS) as conn:
            rows = await conn.execute(select(api_keys.c.id).where(~api_keys.c.revoked))
            return len(rows.all())

    async def revoke(self, name: str) -> int:
        async with self.db.write(_WORDS) as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.name == name, ~api_keys.c.revoked)
                .values(revoked=True, revoked_at=utcnow())
            )
        return int(result.rowcount or 0)

    async def verify(self, raw: str) -> ApiKey | None:
        """The active key ``raw`` is, or None; one indexed read per request, no cache.

        No cache, so that a revoked key fails on its very next request. The lookup is by
        hash; the final comparison is constant-time all the same.
        """
        if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
            return None
        digest = hash_key(raw)
        async with self.db.read(_WORDS) as conn:
            row = (
                await conn.execute(
                    select(api_keys, users.c.role, users.c.status)
                    .outerjoin(users, users.c.id == api_keys.c.user_id)
                    .where(api_keys.c.key_hash == digest)
                )
            ).first()
        if row is None or not hmac.compare_digest(bytes(row.key_hash), digest) or row.revoked:
            return None
        if row.user_id is not None and row.status != "active":
            return None  # a disabled person's keys stop with their browser sessions
        key = _row(row)
        if row.user_id is not None:
            # Never wider than the person's role, as it is now (a demotion counts at once).
            allowed = ROLE_SCOPES.get(row.role or "", frozenset())
            key = dataclasses.replace(key, scopes=key.scopes & allowed)
        await self._touch(key)
        return key

    async def of_user(self, user_id: int) -> builtins.list[ApiKey]:  # list: a method here
        async with self.db.read(_WORDS) as conn:
            rows = await conn.execute(
                select(api_keys).where(api_keys.c.user_id == user_id).order_by(api_keys.c.id)
            )
            return [_row(r) for r in rows]

    async def revoke_own(self, key_id: int, user_id: int) -> bool:
        """Revoke key ``key_id`` if it is ``user_id``'s and active; False otherwise (the
        caller answers 404 alike for another person's key and a missing one)."""
        async with self.db.write(_WORDS) as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.user_id == user_id, ~api_keys.c.revoked)
                .values(revoked=True, revoked_at=utcnow())
            )
        return bool(result.rowcount)

    async def _touch(self, key: ApiKey) -> None:
        now = datetime.now(UTC)
        last = self._touched.get(key.id)
        if last is not None and now - last < _LAST_USED_EVERY:
            return
        self._touched[key.id] = now
        try:
            async with self.db.write(_WORDS) as conn:
                await conn.execute(
                    update(api_keys).where(api_keys.c.id == key.id).values(last_used_at=now)
                )
        except StoreUnavailable:
            # Best effort: a locked database must not fail the request it describes.
            log.warning("could not record a key's last use", extra={"key_name": key.name})


def active_key_count(settings: Settings) -> int:
    """How many ways in the configured database holds: active keys plus active admin users
    (for the supervisor's start check; either lets an operator in)."""
    from llm_api.chat.store import open_store  # noqa: PLC0415 - migrations load only here

    async def count() -> int:
        store = await open_store(
            settings.database_url, settings.data_dir, busy_timeout=settings.database_busy_timeout
        )
        try:
            from llm_api.people.store import PeopleStore  # noqa: PLC0415 - beside its only use

            admins = await PeopleStore(store.engine).active_admin_count()
            return await KeyStore(store.db).active_count() + admins
        finally:
            await store.close()

    return asyncio.run(count())
