"""Rules applied in code to the model's answer: evidence, owners, lengths, titles."""

from __future__ import annotations

import pytest

from llm_api.email.schemas import ModelTask, clean_title
from llm_api.email.service import clip_text, has_named_owner, verified_evidence

BODY = "שלום,\nיוסי,   בבקשה תכין את\nהמצגת עד מחר.\n> Dan: please send the “final” file"


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        ("יוסי, בבקשה תכין את המצגת עד מחר.", "יוסי, בבקשה תכין את המצגת עד מחר."),
        ('"בבקשה תכין את המצגת"', "בבקשה תכין את המצגת"),
        ("Dan: please send the “final” file", "Dan: please send the “final” file"),
        ("יוסי בבקשה תכין את המצגת", None),  # a comma dropped: not verbatim
        ("please send the final file", None),  # quotes changed: not verbatim
        ("דנה תכין את המצגת", None),
        ("", None),
        (None, None),
        ("עד", None),  # too short to be evidence of anything
    ],
)
def test_evidence_must_be_verbatim(evidence: str | None, expected: str | None) -> None:
    assert verified_evidence(evidence, BODY) == expected


@pytest.mark.parametrize(
    ("owner", "named"),
    [
        ("Dana", True),
        ("דנה כהן", True),
        ("Mike (QA)", True),
        ("everyone", False),
        ("Everyone.", False),
        ("the team", False),
        ("The whole team", False),
        ("whoever can", False),
        ("anyone available", False),
        ("all developers", False),
        ("כולם", False),
        ("הצוות", False),
        ("כל הצוות", False),
        ("כל מי שפנוי", False),
        ("מי שיכול", False),
        ("", False),
        (None, False),
    ],
)
def test_tasks_need_a_named_owner(owner: str | None, named: bool) -> None:
    task = ModelTask(assigned_to=owner, title="t", description="d", due_date=None, evidence=None)
    assert has_named_owner(task) is named


def test_tasks_need_title_and_description() -> None:
    blank = ModelTask(assigned_to="Dana", title=" ", description="d", due_date=None, evidence=None)
    assert not has_named_owner(blank)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("קצר.", 20, "קצר."),
        ("משפט ראשון. משפט שני ארוך יותר.", 20, "משפט ראשון."),
        ("one two three four five six", 13, "one two three"),
        ("one two, three", 9, "one two"),
        ("a. bbbbbbbbbbbbbbbbbbbbbbb", 20, "a."),
        ("x" * 30, 20, "x" * 20),  # one word longer than the limit: the only mid-word cut
        ("  spaced\n\ntext  ", 20, "spaced text"),
    ],
)
def test_clip_text(text: str, limit: int, expected: str) -> None:
    clipped = clip_text(text, limit)
    assert clipped == expected
    assert len(clipped) <= limit


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("«סיכום פגישת צוות»", "סיכום פגישת צוות"),
        ("One two three four five six seven eight", "One two three four five six"),
        ("Title.", "Title"),
        ("**Bold title**", "Bold title"),
        ('"..."', ""),
    ],
)
def test_clean_title(title: str, expected: str) -> None:
    assert clean_title(title) == expected
