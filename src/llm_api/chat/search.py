"""Hebrew-aware search over one owner's conversations (titles and messages).

Both sides of the comparison are folded the same way, in SQL for the stored text and in
Python for the query: Hebrew points and cantillation marks (niqqud, U+0591-U+05C7) are
removed, the five final letters become their ordinary forms (ךםןףץ -> כמנפצ) and Latin
letters are lower-cased. On PostgreSQL the fold is ``translate(lower(…))``; SQLite has no
``translate()``, so the store registers the Python fold as a function on its connections.
Python's casefold and PostgreSQL's lower() agree on the Latin letters that matter here.
It scans the owner's rows (``owner`` is indexed): fine for one person's history; a
trigram or FTS index is the next step if histories grow to millions of messages.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

SQLITE_FUNCTION = "llm_api_fold"

# Every combining mark in the Hebrew block: cantillation U+0591-U+05AF, points U+05B0-U+05BD,
# U+05BF, U+05C1-U+05C2, U+05C4-U+05C5, U+05C7.
HEBREW_MARKS = [chr(c) for c in range(0x0591, 0x05BE)] + [
    "\u05bf",
    "\u05c1",
    "\u05c2",
    "\u05c4",
    "\u05c5",
    "\u05c7",
]
FINAL_LETTERS = {"ך": "כ", "ם": "מ", "ן": "נ", "ף": "פ", "ץ": "צ"}

_TABLE = {ord(m): None for m in HEBREW_MARKS} | {ord(k): v for k, v in FINAL_LETTERS.items()}


def fold(text: str) -> str:
    """The query side of the fold."""
    return text.translate(_TABLE).casefold()


class Folded(FunctionElement[str]):
    """``folded(text)``: the stored side of the fold, compiled per database."""

    type = String()
    inherit_cache = True
    name = "folded"


def folded(column: ColumnElement[str]) -> ColumnElement[str]:
    return Folded(column)


@compiles(Folded, "sqlite")
def _folded_sqlite(element: Folded, compiler: SQLCompiler, **kw: Any) -> str:
    # Nested replace() for ~70 characters overflows SQLite's parser stack; the store
    # registers this Python function on each of its connections (store.configure_sqlite).
    return f"{SQLITE_FUNCTION}({compiler.process(element.clauses, **kw)})"


@compiles(Folded, "postgresql")
def _folded_postgresql(element: Folded, compiler: SQLCompiler, **kw: Any) -> str:
    # translate() drops the characters that have no counterpart: the marks.
    source = compiler.process(literal("".join(FINAL_LETTERS) + "".join(HEBREW_MARKS)), **kw)
    target = compiler.process(literal("".join(FINAL_LETTERS.values())), **kw)
    return f"translate(lower({compiler.process(element.clauses, **kw)}), {source}, {target})"


def register_sqlite(connection: Any) -> None:
    """Make ``folded()`` available on a ``sqlite3`` connection (or aiosqlite's adapter)."""
    connection.create_function(SQLITE_FUNCTION, 1, _fold_or_none, deterministic=True)


def _fold_or_none(text: str | None) -> str | None:
    return None if text is None else fold(text)


def like_pattern(query: str) -> str:
    """A LIKE pattern matching the folded query anywhere; ``\\`` escapes LIKE's wildcards."""
    needle = fold(query).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{needle}%"
