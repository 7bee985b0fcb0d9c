"""Sign-in: local passwords, then the directory; provisioning; the trusted SSO proxy."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import timedelta

from llm_api.errors import InvalidCredentials
from llm_api.people.attempts import SignInAttempts
from llm_api.people.directory import Directory
from llm_api.people.passwords import Passwords
from llm_api.people.store import PeopleStore, User
from llm_api.settings import Settings

log = logging.getLogger(__name__)

REFUSED = "wrong username or password"
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    token: str
    csrf_token: str
    method: str


class People:
    """Everything about who a person is, used by the routers and the guard."""

    def __init__(self, settings: Settings, store: PeopleStore) -> None:
        self.settings = settings
        self.store = store
        self.passwords = Passwords.from_settings(settings)
        self.directory = Directory(settings) if settings.ldap_url else None
        self.attempts = SignInAttempts(
            settings.redis_url,
            per_user=settings.login_attempts_per_user,
            per_address=settings.login_attempts_per_address,
        )
        self.proxy_networks = [
            ipaddress.ip_network(a, strict=False) for a in settings.proxy_addresses
        ]
        self.idle = timedelta(minutes=settings.session_idle_minutes)
        self.absolute = timedelta(hours=settings.session_absolute_hours)

    def methods(self) -> dict[str, bool]:
        return {
            "local": self.settings.local_login,
            "ldap": self.directory is not None,
            "proxy": bool(self.settings.proxy_user_header and self.proxy_networks),
        }

    async def sign_in(self, username: str, password: str, address: str | None) -> SignedIn:
        await self.attempts.check(username, address)
        user = await self.store.by_username(username)
        method = "local"
        verified: User | None = None
        if self.settings.local_login and (user is None or user.source == "local"):
            stored = user.password_hash if user is not None else None
            if await self.passwords.verify(stored, password) and user is not None:
                verified = user
                if stored and self.passwords.needs_rehash(stored):
                    new_hash = await self.passwords.hash(password)
                    verified = await self.store.update_user(user.id, password_hash=new_hash)
        if (
            verified is None
            and self.directory is not None
            and (user is None or user.source == "ldap")
        ):
            found = await self.directory.authenticate(username, password)
            if found is not None:
                method = "ldap"
                role = "admin" if found.admin else "member"
                if user is None:
                    user = await self.store.create_user(
                        username, role=role, source="ldap",
                        display_name=found.display_name, email=found.email,
                    )  # fmt: skip
                elif found.admin and user.role != "admin":
                    user = await self.store.update_user(user.id, role="admin")
                await self.store.update_user(
                    user.id, display_name=found.display_name, email=found.email
                )
                await self.store.set_user_groups(user.id, found.groups)
                verified = await self.store.get(user.id)
        if verified is None or verified.status != "active":
            await self.store.audit(
                "sign_in_failed", actor=None, target=username[:200], address=address,
                detail={"method": "ldap" if self.directory else "local"},
            )  # fmt: skip
            raise InvalidCredentials(REFUSED)
        return await self._open(verified, method, address)

    async def _open(self, user: User, method: str, address: str | None) -> SignedIn:
        token, csrf = await self.store.open_session(user.id, method, absolute=self.absolute)
        await self.store.audit(
            "sign_in", actor=user.username, target=user.username, address=address,
            detail={"method": method},
        )  # fmt: skip
        return SignedIn(await self.store.get(user.id), token, csrf, method)

    def trusted_proxy(self, address: str | None) -> bool:
        if not address or not self.proxy_networks or not self.settings.proxy_user_header:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxy_networks)

    async def sign_in_from_proxy(
        self, username: str, email: str | None, group_names: tuple[str, ...], address: str
    ) -> SignedIn:
        """The person the trusted proxy names; provisioned on first sight."""
        user = await self.store.by_username(username)
        if user is None:
            user = await self.store.create_user(
                username, role="member", source="proxy", email=email
            )
        if user.status != "active":
            raise InvalidCredentials("this account is disabled")
        if user.source == "proxy":
            if email and email != user.email:
                await self.store.update_user(user.id, email=email)
            if self.settings.proxy_groups_header:
                await self.store.set_user_groups(user.id, group_names)
        return await self._open(user, "proxy", address)

    async def close(self) -> None:
        await self.attempts.close()
