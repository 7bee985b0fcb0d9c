"""SQLite: a new message moves its session's ``updated_at`` (a trigger).

A new turn in an existing session is written by one self-committing statement (see
``SessionStore.append_turn``). On PostgreSQL that statement touches the session itself (a
data-modifying CTE); SQLite has no such CTEs, so this trigger does it there. It only ever
moves ``updated_at`` forward, so the explicit touches of the other write paths agree with it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        """
        CREATE TRIGGER messages_touch_session AFTER INSERT ON messages
        BEGIN
            UPDATE sessions SET updated_at = NEW.created_at
            WHERE pk = NEW.session_pk AND updated_at < NEW.created_at;
        END
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS messages_touch_session")
