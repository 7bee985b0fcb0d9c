"""What the gateway knows about the request being served, for metrics, logs and the log table.

One :class:`RequestRecord` per HTTP request, created by the observer middleware and reachable
from any code running for that request through :func:`current_request` (a context variable,
so services need no FastAPI import). Features fill in what only they know: token counts,
the in-stream error, the API key's name once keys exist.
"""

from __future__ import annotations

import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

# Accepted from clients as is: short, printable, no spaces (it is echoed and logged).
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def request_id_from(header: bytes | None) -> str:
    """The client's X-Request-ID when well-formed, else a fresh one."""
    if header is not None:
        try:
            value = header.decode("ascii")
        except UnicodeDecodeError:
            value = ""
        if _REQUEST_ID.fullmatch(value):
            return value
    return secrets.token_hex(16)


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    started_wall: float = field(default_factory=time.time)
    route: str = "unmatched"
    status: int = 0
    # Hook for the security feature: the API key's *name* (never the key), once keys exist.
    key_name: str | None = None
    session_id: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error_type: str | None = None  # the ApiError type that ended the request, if any
    stream_error: bool = False  # an error event was sent after the first byte
    client_disconnected: bool = False
    latency: float | None = None
    first_event_after: float | None = None

    def note_usage(self, usage: Any) -> None:
        """Record an OpenAI ``usage`` object's token counts (ignores anything malformed)."""
        if not isinstance(usage, dict):
            return
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if isinstance(prompt, int):
            self.prompt_tokens = prompt
        if isinstance(completion, int):
            self.completion_tokens = completion


_CURRENT: ContextVar[RequestRecord | None] = ContextVar("llm_api_request", default=None)


def current_request() -> RequestRecord | None:
    return _CURRENT.get()


def bind_request(record: RequestRecord) -> object:
    return _CURRENT.set(record)


def unbind_request(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]  # the token bind_request returned


def note_usage(usage: Any) -> None:
    """Record token usage on the current request, if one is being served."""
    record = _CURRENT.get()
    if record is not None:
        record.note_usage(usage)
