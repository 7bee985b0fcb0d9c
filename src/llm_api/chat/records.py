"""What the conversation store hands out and takes in, and its pagination cursors."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from llm_api.chat.tables import STREAMING
from llm_api.errors import InvalidRequest


# --- values handed out ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StoredMessage:
    pk: int
    seq: int
    role: str
    content: str
    status: str
    created_at: datetime
    token_count: int | None
    lease_until: datetime | None = None

    def is_live(self, now: datetime) -> bool:
        """Still being streamed by a live worker (``streaming`` and its lease not run out)."""
        return self.status == STREAMING and self.lease_until is not None and self.lease_until > now


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    title: str | None
    language: str
    created_at: datetime
    updated_at: datetime
    message_count: int


@dataclass(frozen=True, slots=True)
class SessionHistory:
    info: SessionInfo
    messages: list[StoredMessage]


@dataclass(frozen=True, slots=True)
class NewMessage:
    role: str
    content: str
    token_count: int | None = None


@dataclass(frozen=True, slots=True)
class LeaseRenewal:
    """A streaming reply's lease to extend, with its text so far when new text arrived."""

    pk: int
    content: str | None = None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    assistant_pk: int
    created_session: bool


@dataclass(frozen=True, slots=True)
class SessionPage:
    sessions: list[SessionInfo]
    next_cursor: str | None


# --- cursors ----------------------------------------------------------------------------------
def encode_cursor(updated_at: datetime, pk: int) -> str:
    raw = f"{updated_at.astimezone(UTC).isoformat()}|{pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.split("|")
        when = datetime.fromisoformat(stamp)
        key = int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidRequest("before: not a cursor this API gave out", param="before")
    return when, key
