"""Due-date phrases resolved against the sending date, with an Israeli (Sun–Thu) week."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from llm_api.email.dates import parse_header_date, resolve_due_date

SUN = date(2024, 1, 21)  # a Sunday: the week runs Sun 21 … Sat 27, Thursday is the 25th
WED = date(2024, 1, 24)
THU = date(2024, 1, 25)
FRI = date(2024, 1, 26)
YEAR_END = date(2024, 12, 30)  # a Monday
AUGUST = date(2024, 8, 10)  # August 31st 2024 is a Saturday

CASES: list[tuple[str, date, date | None]] = [
    # Hebrew, relative
    ("מחר", SUN, date(2024, 1, 22)),
    ("עד מחר בבוקר", SUN, date(2024, 1, 22)),
    ("מחרתיים", SUN, date(2024, 1, 23)),
    ("היום", SUN, SUN),
    ("עד סוף היום", WED, WED),
    ("בעוד יומיים", SUN, date(2024, 1, 23)),
    ("בעוד 3 ימים", SUN, date(2024, 1, 24)),
    ("תוך שלושה ימים", SUN, date(2024, 1, 24)),
    ("תוך שבוע", SUN, date(2024, 1, 28)),
    ("בעוד שבועיים", SUN, date(2024, 2, 4)),
    ("בעוד חודש", SUN, date(2024, 2, 21)),
    ("תוך 3 ימי עבודה", SUN, date(2024, 1, 24)),
    ("תוך יומיים", THU, date(2024, 1, 27)),
    ("תוך 2 ימי עבודה", THU, date(2024, 1, 29)),
    # Hebrew, weekdays
    ("יום חמישי", SUN, THU),
    ("עד יום ה'", SUN, THU),
    ("ביום ה׳", SUN, THU),
    ("ביום חמישי הבא", SUN, date(2024, 2, 1)),
    ("יום חמישי הבא", WED, date(2024, 2, 1)),
    ("יום שני הקרוב", SUN, date(2024, 1, 22)),
    ("יום חמישי הזה", THU, THU),
    ("ביום ראשון", FRI, date(2024, 1, 28)),
    ("ביום שישי", SUN, FRI),
    ("עד שבת", SUN, date(2024, 1, 27)),
    # Hebrew, end of week / month
    ("סוף השבוע", SUN, THU),
    ("עד סוף השבוע", THU, THU),
    ("סוף השבוע", FRI, date(2024, 2, 1)),
    ("עד סוף השבוע הבא", SUN, date(2024, 2, 1)),
    ("סוף החודש", SUN, date(2024, 1, 31)),
    ("עד סוף החודש", AUGUST, date(2024, 8, 29)),
    # Hebrew, explicit dates (day first)
    ("25.1.2024", SUN, THU),
    ("עד ה-1/2/2024", SUN, date(2024, 2, 1)),
    ("עד 5.2", SUN, date(2024, 2, 5)),
    ("10.1", SUN, date(2025, 1, 10)),
    ("5.1", YEAR_END, date(2025, 1, 5)),
    ("15 בפברואר", SUN, date(2024, 2, 15)),
    ("3 במרץ 2024", SUN, date(2024, 3, 3)),
    ("עד ה-15", SUN, date(2024, 2, 15)),
    ("עד ה-28 לחודש", SUN, date(2024, 1, 28)),
    ("31.2.2024", SUN, None),
    # Hebrew, vague
    ("בקרוב", SUN, None),
    ("בהקדם האפשרי", SUN, None),
    ("בשבוע הבא", SUN, None),
    ("בחודש הבא", SUN, None),
    ("בימים הקרובים", SUN, None),
    # English, relative
    ("tomorrow", SUN, date(2024, 1, 22)),
    ("Tomorrow morning", FRI, date(2024, 1, 27)),
    ("today", SUN, SUN),
    ("by EOD", WED, WED),
    ("the day after tomorrow", SUN, date(2024, 1, 23)),
    ("in 2 days", SUN, date(2024, 1, 23)),
    ("in two days", YEAR_END, date(2025, 1, 1)),
    ("in a week", SUN, date(2024, 1, 28)),
    ("within two weeks", SUN, date(2024, 2, 4)),
    ("within 3 business days", SUN, date(2024, 1, 24)),
    ("within 1 business day", FRI, date(2024, 1, 28)),
    ("in a month", SUN, date(2024, 2, 21)),
    # English, weekdays
    ("Monday", SUN, date(2024, 1, 22)),
    ("by Thursday", SUN, THU),
    ("next Monday", SUN, date(2024, 1, 29)),
    ("next Thursday", WED, date(2024, 2, 1)),
    ("Thursday", WED, THU),
    ("this Sunday", SUN, SUN),
    ("Sunday", SUN, date(2024, 1, 28)),
    # English, end of week / month
    ("end of week", SUN, THU),
    ("by the end of the week", THU, THU),
    ("EOW", FRI, date(2024, 2, 1)),
    ("end of next week", SUN, date(2024, 2, 1)),
    ("end of the month", SUN, date(2024, 1, 31)),
    ("by end of month", AUGUST, date(2024, 8, 29)),
    # English, explicit dates
    ("January 30", SUN, date(2024, 1, 30)),
    ("Feb 3rd, 2024", SUN, date(2024, 2, 3)),
    ("3 February 2024", SUN, date(2024, 2, 3)),
    ("25/12/2024", SUN, date(2024, 12, 25)),
    ("2024-03-15", SUN, date(2024, 3, 15)),
    ("by the 15th", SUN, date(2024, 2, 15)),
    ("on the 25th", SUN, THU),
    ("by the 2nd", YEAR_END, date(2025, 1, 2)),
    # English, vague or empty
    ("soon", SUN, None),
    ("ASAP", SUN, None),
    ("next week", SUN, None),
    ("whenever you can", SUN, None),
    ("when possible", SUN, None),
    ("", SUN, None),
    ("no deadline mentioned", SUN, None),
]


@pytest.mark.parametrize(("phrase", "anchor", "expected"), CASES)
def test_resolves_due_date(phrase: str, anchor: date, expected: date | None) -> None:
    assert resolve_due_date(phrase, anchor) == expected


def test_table_is_large_and_bilingual() -> None:
    hebrew = [p for p, _, _ in CASES if any("\u0590" <= c <= "\u05ff" for c in p)]
    assert len(CASES) >= 40
    assert len(hebrew) >= 20
    assert len(CASES) - len(hebrew) >= 20


def test_none_phrase_is_none() -> None:
    assert resolve_due_date(None, SUN) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Sun, 21 Jan 2024 09:30:00 +0200", date(2024, 1, 21)),
        ("2024-01-20 16:45", date(2024, 1, 20)),
        ("20/01/2024 16:45", date(2024, 1, 20)),
        ("20.1.2024", date(2024, 1, 20)),
        ("Sunday, January 21, 2024 10:00 AM", date(2024, 1, 21)),
        ("יום ראשון 21 בינואר 2024 10:00", date(2024, 1, 21)),
        ("21 January 2024", date(2024, 1, 21)),
        ("21 בינואר", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_parses_header_dates(header: str, expected: date | None) -> None:
    parsed = parse_header_date(header)
    got = parsed.date() if isinstance(parsed, datetime) else parsed
    assert got == expected
