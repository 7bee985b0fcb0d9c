"""Alembic migrations of the conversation store (run by :meth:`SessionStore.migrate`)."""
