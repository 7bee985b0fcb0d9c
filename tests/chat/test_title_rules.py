"""Which model answers count as titles (unit rules; the endpoints are tested elsewhere)."""

from __future__ import annotations

import pytest

from llm_api.chat.schemas import Language
from llm_api.chat.title_rules import echoes_instruction, usable_title
from llm_api.chat.titles import clean_title

HEBREW_PROMPT = "כתוב כותרת קצרה בעברית, עד שש מילים, לשיחה שמתחילה בהודעה הבאה. השב בכותרת בלבד."


@pytest.mark.parametrize(
    "title",
    [
        "כתוב כותרת קצרה בעברית, עד שש",
        "כותרת קצרה בעברית",
        "השב בכותרת בלבד",
        "לשיחה שמתחילה בהודעה",
    ],
)
def test_instruction_echoes_are_caught(title: str) -> None:
    assert echoes_instruction(title, HEBREW_PROMPT, "תוכל לספר לי בדיחה?")


@pytest.mark.parametrize(
    ("title", "question"),
    [
        ("בדיחה על חתולים", "תוכל לספר לי בדיחה על חתולים?"),
        ("מזג האוויר בירושלים", "מה מזג האוויר בירושלים?"),
        # Words the question shares with the instruction are the question's: kept.
        ("כותרת קצרה למאמר", "איך כותבים כותרת קצרה למאמר?"),
    ],
)
def test_real_titles_are_kept(title: str, question: str) -> None:
    assert not echoes_instruction(title, HEBREW_PROMPT, question)
    assert usable_title(title, Language.HEBREW, instruction=HEBREW_PROMPT, question=question) == (
        title
    )


def test_stored_title_echo_becomes_first_words() -> None:
    raw = "כתוב כותרת קצרה בעברית, עד שש"
    assert clean_title(raw, Language.HEBREW, "שלום! תוכל לספר לי בדיחה?") == (
        "שלום! תוכל לספר לי בדיחה?"
    )
    english = "Write a short English title, at most six words"
    assert clean_title(english, Language.ENGLISH, "Tell me a joke about cats, please") == (
        "Tell me a joke about cats"
    )
