"""The one :class:`~sqlalchemy.MetaData` that every table of the gateway is defined on.

Features define their tables here (``chat/tables.py``, ``auth/keys.py``,
``observability/request_log.py``); :mod:`llm_api.schema` imports them all, so that Alembic
and the migrations-vs-metadata test see every table.
"""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData()
