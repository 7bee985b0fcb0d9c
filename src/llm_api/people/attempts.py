"""Sign-in attempts per username and per address, in fixed 15-minute windows.

In Redis when ``LLM_API_REDIS_URL`` is set (every worker counts against one limit), else in
this process. Every attempt counts, successful or not: a limit on failures alone would let
an attacker who knows one password reset the counter.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from llm_api.errors import TooManyAttempts

WINDOW = 900


class SignInAttempts:
    def __init__(self, redis_url: str | None, *, per_user: int, per_address: int) -> None:
        self.redis: Redis | None = Redis.from_url(redis_url) if redis_url else None
        self.per_user = per_user
        self.per_address = per_address
        self._local: dict[str, int] = {}
        self._window = -1

    async def _hit(self, key: str, window: int) -> int:
        if self.redis is None:
            if window != self._window:
                self._local.clear()
                self._window = window
            self._local[key] = self._local.get(key, 0) + 1
            return self._local[key]
        full = f"llm_api:signin:{key}:{window}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(full)
            pipe.expire(full, WINDOW * 2)
            count, _ = await pipe.execute()
        return int(count)

    async def check(self, username: str, address: str | None) -> None:
        """Count this attempt; 429 ``too_many_attempts`` over either limit."""
        now = time.time()
        window = int(now // WINDOW)
        retry = int(WINDOW - now % WINDOW) + 1
        over_user = await self._hit(f"user:{username.casefold()}", window) > self.per_user
        over_address = (
            address is not None and await self._hit(f"addr:{address}", window) > self.per_address
        )
        if over_user or over_address:
            raise TooManyAttempts(
                "too many sign-in attempts; wait before trying again", retry_after=retry
            )

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
