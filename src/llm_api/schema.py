"""Every table of the gateway, on the one shared MetaData: what Alembic compares against.

Importing a feature's table module defines its tables on :data:`llm_api.db.metadata.metadata`;
this module imports all of them. A new feature with tables adds its module here (the
migrations-vs-metadata test in tests/db/test_migrations.py fails until it does).
"""

from __future__ import annotations

import llm_api.auth.keys
import llm_api.chat.tables
import llm_api.observability.request_log
import llm_api.people.tables  # noqa: F401 - imported for its tables
from llm_api.db.metadata import metadata

__all__ = ["metadata"]
