"""Sessions and their messages, one row per message.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp() -> sa.DateTime:
    # Frozen here: the app's UTCDateTime only converts values; its column type is this one.
    return sa.DateTime(timezone=True)


_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("pk", _BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(80), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("title", sa.String(200), nullable=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.UniqueConstraint("owner", "id", name="uq_sessions_owner_id"),
    )
    op.create_index("ix_sessions_owner_updated", "sessions", ["owner", "updated_at", "pk"])
    op.create_index("ix_sessions_updated", "sessions", ["updated_at"])
    op.create_table(
        "messages",
        sa.Column("pk", _BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "session_pk",
            _BigId,
            sa.ForeignKey("sessions.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=True),
        sa.UniqueConstraint("session_pk", "seq", name="uq_messages_session_seq"),
    )
    op.create_index("ix_messages_status", "messages", ["status"])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("sessions")
