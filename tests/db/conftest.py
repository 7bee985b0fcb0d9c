"""Fresh databases for the db tests: the request-log fixture (SQLite file, PostgreSQL db)."""

from tests.observability.conftest import fresh_db_url

__all__ = ["fresh_db_url"]
