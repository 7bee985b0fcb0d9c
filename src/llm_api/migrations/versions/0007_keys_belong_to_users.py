"""Keys belong to people: ``api_keys.user_id``; every existing key's name becomes a user.

Each distinct key name without a user of that name gets one (source ``local``, no password,
role ``admin`` when one of its keys has the admin scope, else ``member``), and every key is
linked to the user of its name. Key rows and their hashes are kept: existing keys work on.

Revision ID: 0007_keys_belong_to_users
Revises: 0006_people
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007_keys_belong_to_users"
down_revision = "0006_people"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.create_index("ix_api_keys_user", ["user_id"])
    keys = sa.table(
        "api_keys", sa.column("name", sa.String), sa.column("scopes", sa.String),
        sa.column("user_id", sa.Integer),
    )  # fmt: skip
    users = sa.table(
        "users", sa.column("id", sa.Integer), sa.column("username", sa.String),
        sa.column("display_name", sa.String), sa.column("role", sa.String),
        sa.column("status", sa.String), sa.column("source", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    conn = op.get_bind()
    existing = {r.username for r in conn.execute(sa.select(users.c.username))}
    roles: dict[str, str] = {}
    for row in conn.execute(sa.select(keys.c.name, keys.c.scopes)):
        admin = "admin" in row.scopes.split(",")
        roles[row.name] = "admin" if admin or roles.get(row.name) == "admin" else "member"
    now = datetime.now(UTC)
    for name, role in sorted(roles.items()):
        if name not in existing:
            conn.execute(
                sa.insert(users).values(
                    username=name, display_name=name, role=role, status="active",
                    source="local", created_at=now,
                )
            )  # fmt: skip
    owner = sa.select(users.c.id).where(users.c.username == keys.c.name).scalar_subquery()
    conn.execute(sa.update(keys).values(user_id=owner))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_user")
        batch.drop_column("user_id")
