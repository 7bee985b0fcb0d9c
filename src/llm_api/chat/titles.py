"""Titles for new conversations, written in the background after the first exchange."""

from __future__ import annotations

import asyncio
import logging
import re

from llm_api.chat.schemas import Language
from llm_api.chat.store import SessionStore
from llm_api.chat.title_rules import MAX_TITLE_WORDS, usable_title
from llm_api.engine.client import EngineClient
from llm_api.engine.models import ModelCatalog
from llm_api.errors import ApiError

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 200
_EXCERPT_CHARS = 1000
_PROMPTS = {
    Language.HEBREW: (
        "כתוב כותרת קצרה בעברית, עד שש מילים, לשיחה שמתחילה בהודעה הבאה. השב בכותרת בלבד.\n\n{text}"
    ),
    Language.ENGLISH: (
        "Write a short English title, at most six words, for a conversation that starts "
        "with the message below. Reply with the title only.\n\n{text}"
    ),
}
_LABEL = re.compile(r"^(title|כותרת)\s*[:：-]\s*", re.IGNORECASE)
_EDGE = "\"'`*#_“”„«»()[] \t.,;:-"


def clean_title(raw: str, language: Language, fallback_text: str) -> str:
    """At most six words of the engine's first line, in the session's language.

    A title that is empty, in the wrong language, or the title prompt repeated back (weak
    models produce all three) is replaced by the first words of the user's message.
    """
    line = next((part for part in raw.splitlines() if part.strip()), "")
    line = _LABEL.sub("", line.strip()).strip(_EDGE)
    title = " ".join(line.split()[:MAX_TITLE_WORDS]).strip(_EDGE)
    prompt = _PROMPTS[language if language is not Language.AUTO else Language.ENGLISH]
    instruction = prompt.replace("{text}", "")
    title = usable_title(title, language, instruction=instruction, question=fallback_text)
    return title.strip(_EDGE)[:MAX_TITLE_CHARS] or "…"


class TitleWriter:
    """Runs title jobs beside the streams; never awaited by a request."""

    def __init__(self, engine: EngineClient, models: ModelCatalog, store: SessionStore) -> None:
        self._engine = engine
        self._models = models
        self._store = store
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, owner: str, session_id: str, language: Language, user_text: str) -> None:
        task = asyncio.create_task(self._write(owner, session_id, language, user_text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for pending titles (tests, shutdown with time to spare)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _write(self, owner: str, session_id: str, language: Language, user_text: str) -> None:
        prompt = _PROMPTS[language if language is not Language.AUTO else Language.ENGLISH]
        try:
            answer = await self._engine.complete_chat(
                {
                    "model": await self._models.model_id(),
                    "messages": [
                        {"role": "user", "content": prompt.format(text=user_text[:_EXCERPT_CHARS])}
                    ],
                    "max_tokens": 24,
                    "temperature": 0.2,
                },
                affinity=session_id,
                background=True,
            )
            raw = str(answer["choices"][0]["message"].get("content") or "")
        except (ApiError, KeyError, IndexError, TypeError, AttributeError) as exc:
            log.info("title generation failed (%s); using the first words", type(exc).__name__)
            raw = ""
        title = clean_title(raw, language, user_text)
        try:
            await self._store.set_title_if_missing(owner, session_id, title)
        except ApiError as exc:
            log.warning("could not store a session title: %s", exc.type)
