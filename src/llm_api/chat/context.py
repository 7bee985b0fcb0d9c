"""Fitting a conversation into the engine's context window, counted by the engine itself.

The prompt is the system prompt plus whole turns (a user message and what answered it);
turns are dropped oldest-first, never cut in half. The cut moves in blocks: the history is
replayed turn by turn, and whenever it overflows the budget the start jumps forward until
what is kept fills at most half of it. Consecutive requests therefore share the same first
turns, byte for byte, until the next overflow, and the engine can reuse its cached prefix.

Counting costs an engine round trip per message, so counts are cached (stored with each
message) and skipped entirely while a cheap upper bound shows that everything fits: a
token covers at least one UTF-8 byte, so ``bytes + per-message overhead`` bounds the count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from llm_api.engine.client import EngineClient
from llm_api.errors import ContextTooLong, EngineRejected

# Template tokens around each message (Gemma: "<start_of_turn>user\n" … "<end_of_turn>\n"),
# plus the generation prompt; generous so that the budget is never exceeded by them.
MESSAGE_OVERHEAD = 8
_TOKENIZE_CONCURRENCY = 8


@dataclass(slots=True)
class PromptMessage:
    role: str
    content: str
    token_count: int | None = None  # cached count, when known
    pk: int | None = None  # stored row, when stored


@dataclass(frozen=True, slots=True)
class Fitted:
    messages: list[PromptMessage]  # what goes to the engine after the system prompt
    dropped: int  # messages left out, oldest first
    counted: dict[int, int]  # new counts of stored rows, to cache


def split_turns(messages: Sequence[PromptMessage]) -> list[list[PromptMessage]]:
    """Group messages into turns, each starting at a user message."""
    turns: list[list[PromptMessage]] = []
    for message in messages:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def choose_start(sizes: Sequence[int], asked: Sequence[int], fixed: int, budget: int) -> int:
    """Index of the first turn to keep, replaying the block policy over the history.

    ``sizes`` are whole turns; ``asked`` the part of each turn that its own request sent
    (the turn without its reply). Replaying each past request as it was keeps the cut
    where earlier requests put it, so the prompts share their prefix.
    """
    start = 0
    kept = 0  # whole turns start..k-1
    for k, (size, ask) in enumerate(zip(sizes, asked, strict=True)):
        if fixed + kept + ask > budget:
            # Jump forward until what is kept fills at most half the budget (keep turn k).
            while start < k and fixed + kept + ask > budget // 2:
                kept -= sizes[start]
                start += 1
        kept += size
    return start


def _asked(turn: Sequence[PromptMessage]) -> int:
    """Tokens of a turn up to its first reply: what the request of that turn sent."""
    total = 0
    for message in turn:
        if message.role == "assistant":
            break
        total += message.token_count or 0
    return total


class ContextBudget:
    """Counts with the engine's /tokenize and decides which turns are sent."""

    def __init__(self, engine: EngineClient) -> None:
        self._engine = engine
        self._system_counts: dict[str, int] = {}
        self._semaphore = asyncio.Semaphore(_TOKENIZE_CONCURRENCY)

    async def count(self, text: str) -> int:
        async with self._semaphore:
            try:
                return len(await self._engine.tokenize(text)) + MESSAGE_OVERHEAD
            except EngineRejected:
                # An engine without /tokenize: fall back to the byte bound (safe, coarse).
                return len(text.encode()) + MESSAGE_OVERHEAD

    async def _system_count(self, system: str) -> int:
        cached = self._system_counts.get(system)
        if cached is None:
            cached = self._system_counts[system] = await self.count(system)
        return cached

    async def fit(self, system: str, messages: Sequence[PromptMessage], *, budget: int) -> Fitted:
        """Keep the newest whole turns within ``budget`` tokens (system prompt included).

        Raises :class:`ContextTooLong` if the newest turn alone does not fit.
        """
        bound = sum(len(m.content.encode()) + MESSAGE_OVERHEAD for m in messages)
        if len(system.encode()) + MESSAGE_OVERHEAD + bound <= budget:
            return Fitted(list(messages), 0, {})

        missing = [m for m in messages if m.token_count is None]
        system_count, *counts = await asyncio.gather(
            self._system_count(system), *(self.count(m.content) for m in missing)
        )
        counted: dict[int, int] = {}
        for message, value in zip(missing, counts, strict=True):
            message.token_count = value
            if message.pk is not None:
                counted[message.pk] = value

        turns = split_turns(messages)
        sizes = [sum(m.token_count or 0 for m in turn) for turn in turns]
        start = choose_start(sizes, [_asked(t) for t in turns], system_count, budget)
        if system_count + sum(sizes[start:]) > budget:
            raise ContextTooLong(
                f"the newest message needs about {sizes[-1]} tokens, more than the "
                f"{max(budget - system_count, 0)} this model's context leaves for it after "
                "the system prompt and max_tokens; shorten it or lower max_tokens",
                param="messages",
            )
        kept = [m for turn in turns[start:] for m in turn]
        return Fitted(kept, len(messages) - len(kept), counted)
