"""The request log behind /api/metrics: one metadata row per API request, engine health samples.

Before this revision the request log created these tables itself, outside the migration
history (in DATA_DIR/observability.sqlite3 or LLM_API_REQUEST_LOG_URL). A database that
already holds them (LLM_API_REQUEST_LOG_URL pointed at the store's database) keeps them and
their rows: only missing tables are created.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "obs_request_log" not in existing:
        op.create_table(
            "obs_request_log",
            sa.Column("id", _RowId, primary_key=True, autoincrement=True),
            sa.Column("ts", sa.Float(), nullable=False),
            sa.Column("request_id", sa.String(128), nullable=False),
            sa.Column("route", sa.String(200), nullable=False),
            sa.Column("method", sa.String(10), nullable=False),
            sa.Column("status", sa.Integer(), nullable=False),
            sa.Column("latency", sa.Float(), nullable=False),
            sa.Column("error", sa.Boolean(), nullable=False),
            sa.Column("key_name", sa.String(200), nullable=True),
            sa.Column("session_id", sa.String(100), nullable=True),
            sa.Column("prompt_tokens", sa.Integer(), nullable=True),
            sa.Column("completion_tokens", sa.Integer(), nullable=True),
        )
        op.create_index("ix_obs_request_log_ts", "obs_request_log", ["ts"])
    if "obs_engine_health" not in existing:
        op.create_table(
            "obs_engine_health",
            sa.Column("id", _RowId, primary_key=True, autoincrement=True),
            sa.Column("ts", sa.Float(), nullable=False),
            sa.Column("healthy", sa.Boolean(), nullable=False),
        )
        op.create_index("ix_obs_engine_health_ts", "obs_engine_health", ["ts"])


def downgrade() -> None:
    op.drop_table("obs_engine_health")
    op.drop_table("obs_request_log")
