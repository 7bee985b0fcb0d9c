"""What every feature shares about the database.

::

    types.py     column types (UTCDateTime, BigId) and utcnow()
    metadata.py  the one MetaData every table of every feature is defined on
    engine.py    the database URL, engine creation, SQLite's pragmas and BEGIN IMMEDIATE hook
    errors.py    the one translator from SQLAlchemy / driver errors to the domain's errors
    writer.py    SQLite group commit (SqliteWriter) and the statement compiler it runs
    database.py  Database: the engine plus the one write path (writer lock, group commit)
    migrate.py   Alembic driven from code, serialized across workers

Nothing here knows a feature: features (chat, auth, observability, …) define their tables on
:data:`~llm_api.db.metadata.metadata` and take a :class:`~llm_api.db.database.Database`.
"""
