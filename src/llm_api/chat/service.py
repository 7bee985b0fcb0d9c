"""Chat replies: reconcile with the stored session, fit the context, stream, persist.

A turn's life, as the store sees it:

1. The session's stored history is read and the request's new messages found
   (:mod:`llm_api.chat.history`); the prompt is fitted to the context window
   (:mod:`llm_api.chat.context`). Nothing is written yet, so a too-long message (422) or
   an engine that is down (503) leaves no trace.
2. The new messages and a ``streaming`` assistant placeholder are committed together,
   while the engine stream is opened and its first chunk awaited (the commit hides behind
   the engine's prompt processing). Only when both have succeeded does the router answer
   200 and send the first token; if the commit fails (409, 503) the engine request is
   closed at once, if the engine fails the placeholder becomes ``error``.
3. While it streams, the text so far is written every few seconds, and the reply's lease
   renewed, by one timer for all of the worker's replies (:mod:`llm_api.chat.leases`); the
   stream itself only appends to a list. A kill -9 keeps the text up to the last write.
4. When the stream ends, however it ends, the reply's text and status are committed
   (``complete``, ``interrupted`` on disconnect or cancellation, ``error`` on an engine
   failure) before the ``done`` event goes out. The write runs in its own task, shielded,
   so a cancelled stream cannot abandon it.

Concurrent requests on one session are rejected with 409 (never interleaved): a reply that
is still streaming (its lease has not run out), or a write that lands between another
request's read and write, makes the later request fail without writing anything.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from llm_api.chat.context import ContextBudget, PromptMessage
from llm_api.chat.history import Incoming, TurnKind, TurnPlan, plan_turn
from llm_api.chat.language import resolve_language
from llm_api.chat.leases import ReplyLeases
from llm_api.chat.prompts import SYSTEM_PROMPTS
from llm_api.chat.schemas import ChatRequest, Language
from llm_api.chat.store import (
    COMPLETE,
    DEFAULT_OWNER,
    ERROR,
    INTERRUPTED,
    STREAMING,
    NewMessage,
    SessionHistory,
    SessionStore,
    StoredMessage,
    utcnow,
)
from llm_api.chat.titles import TitleWriter
from llm_api.engine.client import EngineClient, JsonObject
from llm_api.engine.models import ModelCatalog
from llm_api.engine.sampling import engine_defaults
from llm_api.errors import (
    ApiError,
    Conflict,
    EngineBadResponse,
    InvalidRequest,
    StoreUnavailable,
)

log = logging.getLogger(__name__)
_FINISH_RETRY_DELAYS = (0.2, 1.0, 3.0)


def new_session_id() -> str:
    return "chat_" + secrets.token_urlsafe(16)


@dataclass(slots=True)
class ReplyOutcome:
    """Filled in while the reply streams; read once it has ended."""

    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ChatReply:
    session_id: str
    language: Language
    deltas: AsyncIterator[str]
    outcome: ReplyOutcome
    truncated_messages: int = 0


@dataclass(frozen=True, slots=True)
class ChatLimits:
    default_max_tokens: int
    max_tokens_cap: int
    max_model_len: int = 8192
    # How often a streaming reply's text so far is written and its lease renewed.
    flush_seconds: float = 2.0


@dataclass(frozen=True, slots=True)
class _Turn:
    owner: str
    session_id: str
    language: Language
    assistant_pk: int
    first_user_text: str
    wants_title: bool
    parts: list[str]  # the reply's deltas; the lease timer writes them, the stream appends
    token_counts: dict[int, int]  # counts of stored messages learnt for the prompt, to cache


class ChatService:
    def __init__(
        self,
        engine: EngineClient,
        models: ModelCatalog,
        limits: ChatLimits,
        store: SessionStore,
        titles: TitleWriter | None = None,
    ) -> None:
        self._engine = engine
        self._models = models
        self._limits = limits
        self._store = store
        self._titles = titles
        self._context = ContextBudget(engine)
        self._writes: set[asyncio.Task[None]] = set()
        self._leases = ReplyLeases(store, flush_seconds=limits.flush_seconds)

    def start(self) -> None:
        """Start the timer that writes streaming replies' text and renews their leases."""
        self._leases.start()

    async def start_reply(self, request: ChatRequest, owner: str = DEFAULT_OWNER) -> ChatReply:
        """Store the turn, open the engine stream and wait for its first chunk.

        Everything that can be refused (bad limits, a conflicting or too-long turn, engine
        down or rejecting the prompt, store unavailable) fails here, before the caller has
        sent a byte to its client.
        """
        if request.max_tokens and request.max_tokens > self._limits.max_tokens_cap:
            raise InvalidRequest(
                f"max_tokens must be at most {self._limits.max_tokens_cap}", param="max_tokens"
            )
        session_id = request.session_id or new_session_id()
        history = await self._store.history(owner, session_id) if request.session_id else None
        if history is not None and request.language is Language.AUTO:
            # The session's language keeps the system prompt, and so the cached prefix, stable.
            language = Language(history.info.language)
        else:
            language = resolve_language(request.language, request.messages[-1].content)
        stored = history.messages if history else []
        self._refuse_if_busy(stored)
        incoming = [Incoming(m.role, m.content) for m in request.messages if m.role != "system"]
        plan = plan_turn(stored, incoming)
        if plan.kind is TurnKind.REPLAY:
            assert plan.target is not None  # noqa: S101 - plan_turn sets it for replays
            return _replay(session_id, language, plan.target)

        first = request.messages[0]
        system = first.content if first.role == "system" else SYSTEM_PROMPTS[language]
        prior = stored[:-1] if plan.kind is TurnKind.REGENERATE else stored
        candidates = [
            PromptMessage(m.role, m.content, m.token_count, m.pk) for m in prior if m.content
        ]
        new = [PromptMessage(m.role, m.content) for m in plan.new]
        model = await self._models.served()
        default_max_tokens, sampling = engine_defaults(model, self._limits.default_max_tokens)
        max_tokens = request.max_tokens or default_max_tokens
        fitted = await self._context.fit(
            system, candidates + new, budget=self._budget(model.max_model_len, max_tokens)
        )
        payload: dict[str, Any] = {
            "model": model.id,
            "messages": [{"role": "system", "content": system}, *_alternating(fitted.messages)],
            "max_tokens": max_tokens,
            "stream_options": {"include_usage": True},
            **sampling,
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature

        # The commit and the engine's first chunk are awaited together: the commit hides
        # behind the engine's prompt processing instead of adding to time-to-first-token.
        # Both must have succeeded before anything is returned (and so sent).
        chunks = self._engine.stream_chat(payload, affinity=session_id)
        recording = asyncio.create_task(
            self._record(
                owner, session_id, language, history, plan, new=new, counted=fitted.counted
            )
        )
        opening = asyncio.create_task(_first_chunk(chunks))
        try:
            await asyncio.wait({recording, opening})
        except asyncio.CancelledError:
            if opening.done():  # a cancelled anext() closes the stream itself; this did not
                self._track(asyncio.create_task(_close_stream(chunks)))
            opening.cancel()
            self._track(asyncio.create_task(self._abandon(recording)))
            raise
        if (failed := recording.exception()) is not None:
            if opening.exception() is None:
                await chunks.aclose()
            raise failed
        turn = recording.result()
        if (error := opening.exception()) is not None:
            await chunks.aclose()
            await self._finish(turn, "", ERROR if isinstance(error, ApiError) else INTERRUPTED)
            raise error
        outcome = ReplyOutcome()
        deltas = self._persisted(opening.result(), chunks, outcome, turn)
        return ChatReply(session_id, turn.language, deltas, outcome, fitted.dropped)

    async def close(self) -> None:
        """Let final writes land before the store closes."""
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=10)
        await self._leases.close()

    # --- steps --------------------------------------------------------------------------
    @staticmethod
    def _refuse_if_busy(stored: list[StoredMessage]) -> None:
        # The same test as the sweep's: a reply is busy exactly while its lease holds.
        if stored and stored[-1].is_live(utcnow()):
            raise Conflict(
                "a reply is still streaming in this session; wait for it to finish",
                param="session_id",
            )

    def _budget(self, served_len: int | None, max_tokens: int) -> int:
        window = min(self._limits.max_model_len, served_len or self._limits.max_model_len)
        budget = window - max_tokens
        if budget <= 0:
            raise InvalidRequest(
                f"max_tokens must leave room for the prompt in a {window}-token context",
                param="max_tokens",
            )
        return budget

    async def _record(
        self,
        owner: str,
        session_id: str,
        language: Language,
        history: SessionHistory | None,
        plan: TurnPlan,
        *,
        new: list[PromptMessage],
        counted: dict[int, int],
    ) -> _Turn:
        stored = history.messages if history else []
        session_language = Language(history.info.language) if history else language
        record = await self._store.append_turn(
            owner,
            session_id,
            language=session_language.value,
            expected_last_seq=stored[-1].seq if stored else 0,
            new_messages=[NewMessage(m.role, m.content, m.token_count) for m in new],
            regenerate_pk=plan.target.pk if plan.target is not None else None,
            abandoned_streaming=bool(stored) and stored[-1].status == STREAMING,
            lease=self._leases.lease,
        )
        users = [m.content for m in stored if m.role == "user"] + [
            m.content for m in new if m.role == "user"
        ]
        return _Turn(
            owner=owner,
            session_id=session_id,
            language=session_language,
            assistant_pk=record.assistant_pk,
            first_user_text=users[0] if users else "",
            wants_title=self._titles is not None and (history is None or not history.info.title),
            # From here on the placeholder's lease is renewed until its end is written.
            parts=self._leases.track(record.assistant_pk),
            token_counts=counted,
        )

    async def _persisted(
        self,
        first: JsonObject,
        rest: AsyncGenerator[JsonObject, None],
        outcome: ReplyOutcome,
        turn: _Turn,
    ) -> AsyncIterator[str]:
        parts = turn.parts  # per chunk: one append, nothing else (the lease timer reads it)
        status = INTERRUPTED  # unless the stream ends or fails on its own
        try:
            async with aclosing(rest):
                text = _absorb(first, outcome)
                if text:
                    parts.append(text)
                    yield text
                async for chunk in rest:
                    text = _absorb(chunk, outcome)
                    if text:
                        parts.append(text)
                        yield text
            status = COMPLETE
        except ApiError:
            status = ERROR
            raise
        finally:
            await self._finish(turn, "".join(parts), status)
            # Metadata only: token counts (the engine's prefix-cache hits among them).
            log.info(
                "chat reply %s: status %s, finish %s",
                turn.assistant_pk,
                status,
                outcome.finish_reason,
                extra={"usage": outcome.usage},
            )
        if status == COMPLETE and turn.wants_title and self._titles is not None:
            self._titles.schedule(turn.owner, turn.session_id, turn.language, turn.first_user_text)

    async def _finish(self, turn: _Turn, content: str, status: str) -> None:
        """Commit a reply's end in a task of its own: cancelling the caller cannot stop it."""
        task = asyncio.create_task(self._finish_with_retries(turn, content, status))
        self._track(task)
        await asyncio.shield(task)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _abandon(self, recording: asyncio.Task[_Turn]) -> None:
        """The client left before the first token: once the turn is stored, close it."""
        try:
            turn = await recording
        except Exception:
            return  # nothing was stored, so nothing to close
        await self._finish_with_retries(turn, "", INTERRUPTED)

    async def _finish_with_retries(self, turn: _Turn, content: str, status: str) -> None:
        try:
            await self._write_end(turn, content, status)
        finally:
            self._leases.forget(turn.assistant_pk)

    async def _write_end(self, turn: _Turn, content: str, status: str) -> None:
        pk = turn.assistant_pk
        for delay in (*_FINISH_RETRY_DELAYS, None):
            try:
                await self._store.finish_message(pk, content, status, turn.token_counts)
            except StoreUnavailable:
                if delay is None:
                    # The row stays "streaming" with the text of the last lease renewal;
                    # once its lease runs out the sweep or the next turn marks it
                    # interrupted. The rest of the text is lost, which the log records.
                    log.error("could not store the end of reply %s (status %s)", pk, status)  # noqa: TRY400 - no traceback wanted
                    return
                await asyncio.sleep(delay)
            else:
                return


async def _close_stream(chunks: AsyncGenerator[JsonObject, None]) -> None:
    try:
        await chunks.aclose()
    except Exception:
        return  # it failed already; closing is all that was wanted


async def _first_chunk(chunks: AsyncGenerator[JsonObject, None]) -> JsonObject:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        raise EngineBadResponse("the inference engine ended the stream at once") from None


def _replay(session_id: str, language: Language, reply: StoredMessage) -> ChatReply:
    """A resent request that was answered already: the stored answer, no engine call."""

    async def deltas() -> AsyncIterator[str]:
        if reply.content:
            yield reply.content

    return ChatReply(session_id, language, deltas(), ReplyOutcome(finish_reason="stop"))


def _alternating(messages: list[PromptMessage]) -> list[dict[str, str]]:
    """Join consecutive messages of one role (a turn whose reply failed leaves two user
    messages in a row; Gemma's template, among others, rejects that)."""
    out: list[dict[str, str]] = []
    for message in messages:
        if out and out[-1]["role"] == message.role:
            out[-1]["content"] += "\n\n" + message.content
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def _absorb(chunk: JsonObject, outcome: ReplyOutcome) -> str:
    """Return the chunk's text, recording finish reason and usage on the way."""
    usage = chunk.get("usage")
    if usage:
        outcome.usage = usage
    choices = chunk.get("choices")
    if not choices:
        return ""
    choice = choices[0]
    reason = choice.get("finish_reason")
    if reason:
        outcome.finish_reason = reason
    delta = choice.get("delta")
    if delta:
        content = delta.get("content")
        if content:
            return str(content)
    return ""
