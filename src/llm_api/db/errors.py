"""The one translator from database errors to the domain's: every store goes through it.

* a uniqueness or foreign-key violation -> :class:`~llm_api.errors.Conflict` (409);
* a failure a retry can cure (locked, disk full, unreachable, serialization, deadlock) ->
  :class:`~llm_api.errors.StoreUnavailable` (503, retryable);
* anything else is a bug and propagates as it is (a 500 with the request id).

Each store passes its own words (:class:`ErrorWords`), so the caller reads "the key store is
unavailable", not a driver's message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from llm_api.errors import Conflict, StoreUnavailable

_UNAVAILABLE_SQLSTATE_CLASSES = {"08", "53", "57"}  # connection, resources (disk full), shutdown
_UNAVAILABLE_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock timeout


@dataclass(frozen=True, slots=True)
class ErrorWords:
    unavailable: str = "the database is unavailable; retry shortly"
    conflict: str = "another request changed the same data at the same time; retry"


DEFAULT_WORDS = ErrorWords()


def is_unavailable(exc: DBAPIError) -> bool:
    if isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated:
        return True
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or getattr(exc.orig, "pgcode", "") or "")
    return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES


@contextmanager
def translate_errors(words: ErrorWords = DEFAULT_WORDS) -> Iterator[None]:
    try:
        yield
    except (IntegrityError, sqlite3.IntegrityError):
        raise Conflict(words.conflict) from None
    except DBAPIError as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(words.unavailable) from None
        raise
    # sqlite3's own errors come from the group-committing writer (locked, full, I/O).
    except (OSError, TimeoutError, sqlite3.OperationalError):
        raise StoreUnavailable(words.unavailable) from None
