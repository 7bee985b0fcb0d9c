"""Local passwords: Argon2id with configured parameters, a minimum policy, re-hash on change.

An unknown username is checked against a dummy hash made with the same parameters, so a
wrong password and an unknown user take the same time (no user enumeration by timing).
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from llm_api.errors import InvalidRequest
from llm_api.settings import Settings

MAX_PASSWORD_CHARS = 1024


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, min_length: int):
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self.min_length = min_length
        self._dummy = self.hasher.hash("not a password anyone has")

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            min_length=settings.password_min_length,
        )

    def check_policy(self, password: str, username: str) -> None:
        if len(password) < self.min_length:
            raise InvalidRequest(
                f"a password needs at least {self.min_length} characters", param="password"
            )
        if len(password) > MAX_PASSWORD_CHARS:
            raise InvalidRequest(
                f"a password may hold at most {MAX_PASSWORD_CHARS} characters", param="password"
            )
        if password.casefold() == username.casefold():
            raise InvalidRequest("the password must not be the username", param="password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; None (no such user) costs the same."""
        return await asyncio.to_thread(self._verify, stored, password[:MAX_PASSWORD_CHARS])

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)
