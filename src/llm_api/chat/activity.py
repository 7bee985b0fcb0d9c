"""Sessions seen recently, for ``active_sessions`` until conversations are stored."""

from __future__ import annotations

import time


class SessionActivity:
    """Last-seen times of session ids in this process; stale ones are pruned on read."""

    def __init__(self, window_seconds: float = 30 * 60) -> None:
        self._window = window_seconds
        self._last_seen: dict[str, float] = {}

    def touch(self, session_id: str) -> None:
        self._last_seen[session_id] = time.monotonic()

    def active_count(self) -> int:
        horizon = time.monotonic() - self._window
        self._last_seen = {k: t for k, t in self._last_seen.items() if t >= horizon}
        return len(self._last_seen)
