"""A streaming reply's lease: the time until which its worker vouches that it is alive.

The worker that streams a reply renews the lease (and stores the text so far) every few
seconds; a ``streaming`` row whose lease has run out belongs to a dead worker and may be
marked ``interrupted``. Rows written before this revision have no lease and count as expired.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamp() -> sa.DateTime:
    # Frozen here: the app's UTCDateTime only converts values; its column type is this one.
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("messages", sa.Column("lease_until", _timestamp(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("lease_until")
