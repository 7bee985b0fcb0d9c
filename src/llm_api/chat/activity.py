"""``active_sessions``: sessions with a message in the last LLM_API_ACTIVE_SESSION_MINUTES.

Counted in the store, so every worker and replica reports the same number.
"""

from __future__ import annotations

from datetime import timedelta

from llm_api.chat.store import SessionStore, utcnow


class SessionActivity:
    def __init__(self, store: SessionStore, window_minutes: float = 30.0) -> None:
        self._store = store
        self._window = timedelta(minutes=window_minutes)

    async def active_count(self) -> int:
        return await self._store.active_session_count(utcnow() - self._window)
