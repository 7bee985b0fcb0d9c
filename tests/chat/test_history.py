"""Reconciling a request with the stored history (pure rules, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llm_api.chat.history import Incoming, TurnKind, plan_turn
from llm_api.chat.store import COMPLETE, ERROR, INTERRUPTED, StoredMessage
from llm_api.errors import Conflict

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def stored(*rows: tuple[str, str, str]) -> list[StoredMessage]:
    return [
        StoredMessage(
            pk=i + 1, seq=i + 1, role=r, content=c, status=s, created_at=NOW, token_count=None
        )
        for i, (r, c, s) in enumerate(rows)
    ]


def msgs(*rows: tuple[str, str]) -> list[Incoming]:
    return [Incoming(r, c) for r, c in rows]


HISTORY = stored(
    ("user", "שלום", COMPLETE),
    ("assistant", "היי", COMPLETE),
    ("user", "מה נשמע?", COMPLETE),
    ("assistant", "טוב", COMPLETE),
)


def test_empty_session_takes_everything() -> None:
    plan = plan_turn([], msgs(("user", "a"), ("assistant", "b"), ("user", "c")))
    assert plan.kind is TurnKind.APPEND
    assert [m.content for m in plan.new] == ["a", "b", "c"]


def test_full_history_and_only_new_give_the_same_new_message() -> None:
    full = plan_turn(
        HISTORY,
        msgs(("user", "שלום"), ("assistant", "היי"), ("user", "מה נשמע?"), ("assistant", "טוב"),
             ("user", "ביי")),
    )  # fmt: skip
    only_new = plan_turn(HISTORY, msgs(("user", "ביי")))
    assert full.kind is only_new.kind is TurnKind.APPEND
    assert full.new == only_new.new == msgs(("user", "ביי"))


def test_resend_of_an_answered_turn_is_a_replay() -> None:
    for incoming in [
        msgs(("user", "מה נשמע?")),
        msgs(("user", "שלום"), ("assistant", "היי"), ("user", "מה נשמע?")),
    ]:
        plan = plan_turn(HISTORY, incoming)
        assert plan.kind is TurnKind.REPLAY
        assert plan.target is not None
        assert plan.target.content == "טוב"


def test_resend_after_a_failed_reply_regenerates_it() -> None:
    history = [*HISTORY[:3], stored(("assistant", "טו", ERROR))[0]]
    plan = plan_turn(history, msgs(("user", "מה נשמע?")))
    assert plan.kind is TurnKind.REGENERATE


def test_client_copy_may_lack_or_shorten_unfinished_replies() -> None:
    history = stored(
        ("user", "a", COMPLETE),
        ("assistant", "partial answer", INTERRUPTED),
        ("user", "b", COMPLETE),
        ("assistant", "", ERROR),
        ("user", "c", COMPLETE),
        ("assistant", "ok", COMPLETE),
    )
    shortened = plan_turn(
        history,
        msgs(("user", "a"), ("assistant", "partial"), ("user", "b"), ("user", "c"),
             ("assistant", "ok"), ("user", "d")),
    )  # fmt: skip
    assert shortened.new == msgs(("user", "d"))
    dropped = plan_turn(
        history,
        msgs(("user", "a"), ("user", "b"), ("user", "c"), ("assistant", "ok"), ("user", "d")),
    )
    assert dropped.new == msgs(("user", "d"))


def test_contradicting_history_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        plan_turn(HISTORY, msgs(("user", "שלום"), ("assistant", "משהו אחר"), ("user", "x")))
    with pytest.raises(Conflict):  # diverges after the first turn
        plan_turn(
            HISTORY,
            msgs(
                ("user", "שלום"),
                ("assistant", "היי"),
                ("user", "zzz"),
                ("assistant", "q"),
                ("user", "r"),
            ),
        )


def test_repeated_lone_question_after_another_one_is_new() -> None:
    plan = plan_turn(HISTORY, msgs(("user", "שלום")))
    assert plan.kind is TurnKind.APPEND
