"""What the simulated people ask: multi-turn conversations and emails, Hebrew first.

A person is drawn from the mix (weights by kind of work): a Hebrew or an English
conversation (short questions, or long ones that grow the history until the gateway has to
truncate it), or a run of emails to extract tasks from or to summarize.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Kind = Literal["hebrew", "english", "extract", "summary"]
KINDS: tuple[Kind, ...] = ("hebrew", "english", "extract", "summary")

_LONG_HE = (
    "אני מכין מצגת להנהלה על מעבר של מערכות הארגון לענן פרטי ברשת מסווגת. "
    "יש לנו שלושה צוותים, תקציב מוגבל, ודרישות אבטחה מחמירות: אין גישה לאינטרנט, "
    "כל שינוי עובר ועדת אישור, והגיבויים נשמרים בשני אתרים. "
) * 4
_LONG_EN = (
    "We are planning the migration of our department's document archive to a new system on "
    "an air-gapped network. There are three teams, a fixed budget and strict rules: no "
    "internet access, every change goes through a review board, backups live in two sites. "
) * 4

CONVERSATIONS: dict[Literal["hebrew", "english"], tuple[tuple[str, ...], ...]] = {
    "hebrew": (
        ("שלום! מה ההבדל בין זיכרון RAM לזיכרון מטמון?", "תן דוגמה מהחיים.", "תודה, ובקצרה?"),
        ("כתוב לי הודעת תודה קצרה לצוות על סיום הפרויקט.", "עכשיו בנוסח רשמי יותר."),
        ("מה כדאי לבקר בירושלים ביום אחד?", "ואם יורד גשם?", "איפה אוכלים ארוחת צהריים?"),
        (
            _LONG_HE + "איך הייתם בונים את תוכנית העבודה?",
            _LONG_HE + "פרט את שלב הבדיקות.",
            _LONG_HE + "מה הסיכונים העיקריים?",
            _LONG_HE + "סכם הכל בחמש נקודות.",
        ),
    ),
    "english": (
        ("Hi! What is the difference between a process and a thread?", "Give an example."),
        ("Write a short thank-you note to my team.", "Make it more formal."),
        (
            _LONG_EN + "How would you plan the work?",
            _LONG_EN + "Detail the testing phase.",
            _LONG_EN + "What are the main risks?",
        ),
    ),
}

EMAILS: tuple[str, ...] = (
    "From: דנה כהן <dana@example.org>\nDate: Tue, 1 Dec 2026 09:12:00 +0200\n"
    "Subject: דוח רבעוני\n\nשלום יוסי,\nנא לשלוח את הדוח הרבעוני להנהלה עד יום חמישי. "
    "בנוסף, מיכל תתאם פגישה עם הספק בשבוע הבא.\nתודה, דנה",
    "From: Avi Levi <avi@example.org>\nDate: Mon, 30 Nov 2026 16:40:00 +0200\n"
    "Subject: Server upgrade\n\nHi team,\nThe upgrade of the build servers is scheduled for "
    "Sunday. Noa, please back up the databases by Friday; Omer will update the runbook.\nAvi",
    "From: מיכל ברק <michal@example.org>\nDate: Sun, 29 Nov 2026 08:05:00 +0200\n"
    "Subject: סיכום ישיבת צוות\n\n"
    + "בישיבה הוחלט להעביר את מערכת ההזמנות לשרת החדש, לעדכן את נהלי הגיבוי ולקבוע הדרכה "
    "לעובדים החדשים. " * 6 + "\nמיכל",
)


@dataclass(frozen=True, slots=True)
class Work:
    """One person's work: the turns of a conversation, or the emails they send."""

    kind: Kind
    language: Literal["hebrew", "english"]
    turns: tuple[str, ...]


def parse_mix(text: str) -> dict[Kind, float]:
    """``hebrew=6,english=2,extract=1,summary=1``: weights, normalised to shares."""
    weights: dict[Kind, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in KINDS:
            raise ValueError(f"mix part {part!r}: expected KIND=WEIGHT, KIND one of {KINDS}")
        weights[name] = float(value)
    total = sum(weights.values())
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError("the mix needs non-negative weights that add up to more than 0")
    return {kind: weight / total for kind, weight in weights.items() if weight > 0}


def draw(mix: dict[Kind, float], rng: random.Random) -> Work:
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    if kind in ("hebrew", "english"):
        turns = rng.choice(CONVERSATIONS[kind])
        return Work(kind, kind, turns)
    emails = tuple(rng.sample(EMAILS, k=2))
    return Work(kind, "english" if emails[0].startswith("From: Avi") else "hebrew", emails)


def email_prompt(kind: Kind, email: str) -> str:
    """The same job for a side that has no email endpoints (the engine direct, LiteLLM)."""
    if kind == "extract":
        return "חלץ את המשימות מהמייל הבא, כרשימת JSON:\n\n" + email
    return "סכם את המייל הבא בשני משפטים:\n\n" + email
