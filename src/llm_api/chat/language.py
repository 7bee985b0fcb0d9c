"""Which language to answer in: the caller's choice, else the script of the last user turn."""

from __future__ import annotations

from llm_api.chat.schemas import Language

_HEBREW_FIRST, _HEBREW_LAST = 0x0590, 0x05FF


def hebrew_ratio(text: str) -> float:
    """Share of letters that are Hebrew script (0.0 for text without letters)."""
    letters = hebrew = 0
    for char in text:
        if char.isalpha():
            letters += 1
            if _HEBREW_FIRST <= ord(char) <= _HEBREW_LAST:
                hebrew += 1
    return hebrew / letters if letters else 0.0


def detect_language(text: str) -> Language:
    """Hebrew when at least half of the letters are Hebrew, English otherwise."""
    return Language.HEBREW if hebrew_ratio(text) >= 0.5 else Language.ENGLISH


def resolve_language(requested: Language, last_user_text: str) -> Language:
    return detect_language(last_user_text) if requested is Language.AUTO else requested
