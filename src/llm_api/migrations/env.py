"""Alembic environment: always runs on the connection the gateway hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from llm_api.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise TypeError("run migrations through llm_api.db.migrate.upgrade()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
