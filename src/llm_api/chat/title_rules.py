"""When a model's title is not a title, and what replaces it.

A small base model (the embedded Gemma 3 270M) often answers a title prompt by repeating
the prompt ("כתוב כותרת קצרה בעברית, עד שש"), or answers in another language. Either is
replaced by the first words of the question, which are on topic and in the right language
by nature. Shared by the stored session titles and ``POST /api/title/generate``.
"""

from __future__ import annotations

import re

from llm_api.chat.language import detect_language
from llm_api.chat.schemas import Language

MAX_TITLE_WORDS = 6
_WORD = re.compile(r"\w+", re.UNICODE)
# Hebrew writes "to the", "and", "the", "in" … as one-letter prefixes: "לשיחה" is "שיחה".
_HEBREW_PREFIXES = "והבלמשכ"


def _stems(text: str) -> set[str]:
    stems = set()
    for word in _WORD.findall(text.casefold()):
        stems.add(word)
        if len(word) > 3 and word[0] in _HEBREW_PREFIXES:
            stems.add(word[1:])
    return stems


def echoes_instruction(title: str, instruction: str, question: str) -> bool:
    """True when most of the title's words come from the instruction and not the question.

    Words the question shares with the instruction do not count against the title (a
    question about "titles" may well get a title with that word).
    """
    words = _WORD.findall(title.casefold())
    if not words:
        return False
    from_instruction = _stems(instruction) - _stems(question)
    echoed = sum(1 for w in words if w in from_instruction or w[1:] in from_instruction)
    return echoed >= 2 and echoed * 2 >= len(words)


def first_words(question: str) -> str:
    return " ".join(question.split()[:MAX_TITLE_WORDS]).strip("\"'`*#_“”„«»()[] \t.,;:-")


def usable_title(title: str, language: Language, *, instruction: str, question: str) -> str:
    """``title`` if it is one, else the first words of ``question`` (the fallback)."""
    if (
        not title
        or echoes_instruction(title, instruction, question)
        or (language is not Language.AUTO and detect_language(title) is not language)
    ):
        return first_words(question) or title
    return title
