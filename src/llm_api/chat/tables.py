"""The conversation tables: one row per session, one row per message."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from llm_api.db.metadata import metadata
from llm_api.db.types import BigId, UTCDateTime

DEFAULT_OWNER = "default"

STREAMING = "streaming"
COMPLETE = "complete"
INTERRUPTED = "interrupted"
ERROR = "error"

# How long a streaming reply counts as alive without a renewal of its lease, by default.
DEFAULT_LEASE = timedelta(seconds=10)

sessions = Table(
    "sessions",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("id", String(80), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("title", String(200), nullable=True),
    Column("language", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("owner", "id", name="uq_sessions_owner_id"),
    Index("ix_sessions_owner_updated", "owner", "updated_at", "pk"),
    Index("ix_sessions_updated", "updated_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("session_pk", BigId, ForeignKey("sessions.pk", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("token_count", Integer, nullable=True),
    # Until when the worker streaming this reply vouches that it is alive (it renews the
    # lease every few seconds); a ``streaming`` row past its lease belongs to a dead worker.
    Column("lease_until", UTCDateTime(), nullable=True),
    UniqueConstraint("session_pk", "seq", name="uq_messages_session_seq"),
    Index("ix_messages_status", "status"),
)
