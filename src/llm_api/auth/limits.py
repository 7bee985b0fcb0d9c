"""Per-key limits (requests per minute, concurrent generations) and the engine admission gate.

Per-key counters live in Redis when ``LLM_API_REDIS_URL`` is set, so that every worker and
replica counts against the same limit; otherwise in this process, and then a limit holds per
worker (N workers admit up to N times the configured rate).

The engine gate caps concurrent engine requests per process with a short bounded queue: a
request that finds every slot busy and the queue full is answered 503 at once, instead of
waiting behind work the engine cannot start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis

from llm_api.errors import Overloaded, RateLimited

WINDOW_SECONDS = 60

# INCR the stream counter unless that would pass the limit; refresh its TTL so that a
# crashed worker's slots drain away instead of blocking the key for ever.
_ACQUIRE = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"""
_RELEASE = """
local n = redis.call('DECR', KEYS[1])
if n < 0 then redis.call('SET', KEYS[1], 0) end
return n
"""


class Counters(Protocol):
    async def hit(self, key: str, window: int) -> int: ...
    async def acquire(self, key: str, limit: int, ttl: int) -> bool: ...
    async def release(self, key: str) -> None: ...
    async def close(self) -> None: ...


class LocalCounters:
    """Counters in this process (no Redis configured)."""

    def __init__(self) -> None:
        self._windows: dict[str, int] = {}
        self._slots: dict[str, int] = {}

    async def hit(self, key: str, window: int) -> int:
        stale = [k for k in self._windows if not k.endswith(f":{window}")]
        for k in stale:
            del self._windows[k]
        full = f"{key}:{window}"
        self._windows[full] = self._windows.get(full, 0) + 1
        return self._windows[full]

    async def acquire(self, key: str, limit: int, ttl: int) -> bool:
        if self._slots.get(key, 0) >= limit:
            return False
        self._slots[key] = self._slots.get(key, 0) + 1
        return True

    async def release(self, key: str) -> None:
        self._slots[key] = max(0, self._slots.get(key, 0) - 1)

    async def close(self) -> None:
        return None


class RedisCounters:
    """Counters shared by every worker through Redis (fixed one-minute windows)."""

    def __init__(self, url: str, namespace: str = "llm_api") -> None:
        self.namespace = namespace
        self.redis: Redis = Redis.from_url(url)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._release = self.redis.register_script(_RELEASE)

    async def hit(self, key: str, window: int) -> int:
        full = f"{self.namespace}:rpm:{key}:{window}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(full)
            pipe.expire(full, WINDOW_SECONDS * 2)
            count, _ = await pipe.execute()
        return int(count)

    async def acquire(self, key: str, limit: int, ttl: int) -> bool:
        return bool(await self._acquire(keys=[f"{self.namespace}:slots:{key}"], args=[limit, ttl]))

    async def release(self, key: str) -> None:
        await self._release(keys=[f"{self.namespace}:slots:{key}"])

    async def close(self) -> None:
        await self.redis.aclose()


def open_counters(redis_url: str | None) -> Counters:
    return RedisCounters(redis_url) if redis_url else LocalCounters()


class KeyLimits:
    def __init__(self, counters: Counters, *, stream_ttl: int) -> None:
        self.counters = counters
        self.stream_ttl = stream_ttl

    async def check_rate(self, name: str, rpm: int) -> None:
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        if await self.counters.hit(name, window) > rpm:
            retry = int(WINDOW_SECONDS - now % WINDOW_SECONDS) + 1
            raise RateLimited(
                f"this key is limited to {rpm} requests per minute", retry_after=retry
            )

    @asynccontextmanager
    async def stream(self, name: str, limit: int) -> AsyncIterator[None]:
        if not await self.counters.acquire(name, limit, self.stream_ttl):
            raise RateLimited(
                f"this key may run {limit} generation(s) at once; wait for one to finish",
                retry_after=1,
            )
        try:
            yield
        finally:
            await asyncio.shield(self.counters.release(name))


class Gate(Protocol):
    def slot(self) -> AbstractAsyncContextManager[None]: ...


class EngineGate:
    """At most ``limit`` engine requests at once; at most ``queue`` more wait, briefly."""

    def __init__(self, limit: int, queue: int, timeout: float) -> None:
        self.limit = limit
        self.queue = queue
        self.timeout = timeout
        self._slots = asyncio.Semaphore(limit)
        self.waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked():
            if self.waiting >= self.queue:
                raise Overloaded("the server is at capacity; retry shortly", retry_after=1)
            self.waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), self.timeout)
            except TimeoutError:
                raise Overloaded(
                    "the server is at capacity; retry shortly", retry_after=1
                ) from None
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()


def message_limit_error(
    body: object, *, max_messages: int, max_chars: int
) -> tuple[str, str] | None:
    """(message, param) when a chat body has too many messages or one too long, else None.

    Runs before the route parses the body, on both chat APIs; shapes it does not know are
    left to the route's own validation.
    """
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    if len(messages) > max_messages:
        return f"at most {max_messages} messages are accepted", "messages"
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # OpenAI content parts: count their text
            content = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        if isinstance(content, str) and len(content) > max_chars:
            return (
                f"a message may hold at most {max_chars} characters",
                f"messages.{index}.content",
            )
    return None


_FULL = "the server is at capacity; retry shortly"


class SharedEngineGate:
    """The engine gate across workers, through Redis: ``limit`` running, ``queue`` waiting.

    A waiting request polls for a free slot every ``poll`` seconds (Redis has no fair
    semaphore to block on); the queue is short, so the polling is too.
    """

    def __init__(
        self, counters: Counters, limit: int, queue: int, timeout: float, *, ttl: int,
        poll: float = 0.02,
    ) -> None:  # fmt: skip
        self.counters = counters
        self.limit = limit
        self.queue = queue
        self.timeout = timeout
        self.ttl = ttl
        self.poll = poll

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        running, waiting = "engine:running", "engine:waiting"
        if not await self.counters.acquire(running, self.limit, self.ttl):
            if not await self.counters.acquire(waiting, self.queue, self.ttl):
                raise Overloaded(_FULL, retry_after=1)
            try:
                deadline = time.monotonic() + self.timeout
                while not await self.counters.acquire(running, self.limit, self.ttl):
                    if time.monotonic() > deadline:
                        raise Overloaded(_FULL, retry_after=1)
                    await asyncio.sleep(self.poll)
            finally:
                await asyncio.shield(self.counters.release(waiting))
        try:
            yield
        finally:
            await asyncio.shield(self.counters.release(running))
