"""Dates in code, not in the model: header dates and due-date phrases, Hebrew and English.

The model reports a due date as the email says it ("מחר", "יום חמישי הבא", "25.1.2024",
"end of week"); :func:`resolve_due_date` turns that phrase into a date against the sending
date. The rules, all with an Israeli week (Sunday is its first day; Sunday–Thursday are
working days):

- numeric dates are day-first (``25.1.2024``, ``25/01/24``); ISO ``2024-01-25`` as is; a date
  without a year is the next such date on or after the anchor;
- a bare weekday ("Monday", "ביום שני") is its next occurrence after the anchor; "this X"
  ("X הזה") may be the anchor day itself; "next X" ("X הבא") is X in the following week;
- "end of week" / "סוף השבוע" is this week's Thursday (next week's once it has passed);
  "end of month" / "סוף החודש" is the month's last working day;
- "in N days" counts calendar days, "N business days" / "ימי עבודה" counts working days;
- vague phrases ("soon", "בקרוב", "next week", "בחודש הבא") and anything unknown give
  ``None``: a wrong date is worse than no date.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta
from email.utils import parsedate_to_datetime

# Python's weekday(): Monday=0 … Sunday=6. The Israeli week starts on Sunday.
_SUNDAY, _THURSDAY = 6, 3
_WORKING_DAYS = {6, 0, 1, 2, 3}

_EN_WEEKDAYS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2,
    "thursday": 3, "thu": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5,
    "sunday": 6, "sun": 6,
}  # fmt: skip
_HE_WEEKDAYS = {
    "ראשון": 6, "שני": 0, "שלישי": 1, "רביעי": 2, "חמישי": 3, "שישי": 4, "שבת": 5,
    "א": 6, "ב": 0, "ג": 1, "ד": 2, "ה": 3, "ו": 4,
}  # fmt: skip
_EN_MONTHS = {
    name: index
    for index in range(1, 13)
    for name in (calendar.month_name[index].lower(), calendar.month_abbr[index].lower())
} | {"sept": 9}
_HE_MONTHS = {
    "ינואר": 1, "פברואר": 2, "מרץ": 3, "מרס": 3, "אפריל": 4, "מאי": 5, "יוני": 6,
    "יולי": 7, "אוגוסט": 8, "ספטמבר": 9, "אוקטובר": 10, "נובמבר": 11, "דצמבר": 12,
}  # fmt: skip
_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "fourteen": 14,
    "אחד": 1, "אחת": 1, "שניים": 2, "שנים": 2, "שתיים": 2, "שני": 2, "שתי": 2,
    "שלושה": 3, "שלוש": 3, "ארבעה": 4, "ארבע": 4, "חמישה": 5, "חמש": 5, "שישה": 6,
    "שש": 6, "שבעה": 7, "שבע": 7, "שמונה": 8, "תשעה": 9, "תשע": 9, "עשרה": 10, "עשר": 10,
}  # fmt: skip

_VAGUE = re.compile(
    r"\b(soon|asap|as soon as possible|later|sometime|when(ever)? (you|possible)|tbd|"
    r"next week|next month|this month|this week|in the coming days|at some point)\b|"
    r"בקרוב|בהקדם|מתישהו|כשתוכל|כשיתאפשר|בשבוע הבא|שבוע הבא|בחודש הבא|חודש הבא|בימים הקרובים"
)

_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
_NUMERIC = re.compile(r"(?<![\d.])(\d{1,2})[./-](\d{1,2})(?:[./-](\d{2}|\d{4}))?(?![\d])")
_DAY_OF_MONTH = re.compile(
    r"\b(?:by |on |until |before )?the (\d{1,2})(?:st|nd|rd|th)\b|"
    r"(?:עד |ב|עד ה|ל)[-־]?(\d{1,2})(?: ל?חודש|\b(?!\s*[./\d]))"
)
_MONTH_WORD = r"[a-z]+|[\u05d0-\u05ea]+"
_DAY_MONTH = re.compile(
    rf"(?<!\d)(\d{{1,2}})(?:st|nd|rd|th)?\s*(?:of\s+|ב|ל)?[-־]?\s*({_MONTH_WORD})\.?,?"
    r"(?:\s+(\d{4}))?"
)
_MONTH_DAY = re.compile(rf"\b({_MONTH_WORD})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b,?(?:\s+(\d{{4}}))?")
_IN_UNITS = re.compile(
    r"(?:in|within|in the next)\s+(\d+|[a-z]+)\s+(business\s+|working\s+)?(day|week)s?|"
    r"(?:בעוד|תוך|בתוך|עוד)\s+(\d+|[\u05d0-\u05ea]+)\s+(ימים|יום|ימי עבודה|ימי עסקים|שבועות|שבוע)"
)
_HE_DUAL = {"יומיים": 2, "שבועיים": 14, "שבוע": 7, "יום": 1}
_IN_A_MONTH = re.compile(r"\bin (a|one) month\b|(?:בעוד|תוך|בתוך) חודש(?!\S)")
_HE_WEEKDAY = re.compile(
    r"(?:^|\s|ב|עד\s)יום\s+([\u05d0-\u05ea]+)['׳]?(?:\s+(הבא|הקרוב|הזה))?|"
    r"(?:^|\s)(?:עד\s+|ב)?(שבת)(?:\s+(הבאה|הקרובה|הזאת|הזו))?"
)
_EN_WEEKDAY = re.compile(
    r"\b(this|next|coming|this coming)?\s*("
    + "|".join(sorted(_EN_WEEKDAYS, key=len)[::-1])
    + r")\b"
)


def _week_start(day: date) -> date:
    """The Sunday that starts ``day``'s Israeli week."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


def _weekday_in_week(week_start: date, weekday: int) -> date:
    return week_start + timedelta(days=(weekday + 1) % 7)


def _next_weekday(anchor: date, weekday: int, *, include_today: bool) -> date:
    ahead = (weekday - anchor.weekday()) % 7
    if ahead == 0 and not include_today:
        ahead = 7
    return anchor + timedelta(days=ahead)


def _end_of_week(anchor: date, *, next_week: bool = False) -> date:
    thursday = _weekday_in_week(_week_start(anchor), _THURSDAY)
    if next_week or thursday < anchor:
        thursday += timedelta(days=7)
    return thursday


def _end_of_month(anchor: date) -> date:
    last = date(anchor.year, anchor.month, calendar.monthrange(anchor.year, anchor.month)[1])
    while last.weekday() not in _WORKING_DAYS:
        last -= timedelta(days=1)
    return last


def _add_working_days(anchor: date, count: int) -> date:
    day = anchor
    while count > 0:
        day += timedelta(days=1)
        if day.weekday() in _WORKING_DAYS:
            count -= 1
    return day


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _full_year(year: int) -> int:
    return year + 2000 if year < 100 else year


def _without_year(anchor: date, month: int, day: int) -> date | None:
    found = _safe_date(anchor.year, month, day)
    if found is not None and found < anchor:
        found = _safe_date(anchor.year + 1, month, day)
    return found


def _month_number(word: str) -> int | None:
    word = word.lower().rstrip(".")
    return (
        _EN_MONTHS.get(word)
        or _HE_MONTHS.get(word.removeprefix("ב").removeprefix("ל"))
        or (_HE_MONTHS.get(word))
    )


def _count(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    return _NUMBERS.get(word)


def _explicit_date(text: str, anchor: date) -> date | None:  # noqa: PLR0911 - one per form
    if match := _ISO.search(text):
        return _safe_date(int(match[1]), int(match[2]), int(match[3]))
    if match := _NUMERIC.search(text):
        day, month = int(match[1]), int(match[2])
        if match[3]:
            return _safe_date(_full_year(int(match[3])), month, day)
        return _without_year(anchor, month, day)
    for match in _DAY_MONTH.finditer(text):
        month_number = _month_number(match[2])
        if month_number:
            if match[3]:
                return _safe_date(int(match[3]), month_number, int(match[1]))
            return _without_year(anchor, month_number, int(match[1]))
    for match in _MONTH_DAY.finditer(text):
        month_number = _month_number(match[1])
        if month_number:
            if match[3]:
                return _safe_date(int(match[3]), month_number, int(match[2]))
            return _without_year(anchor, month_number, int(match[2]))
    return None


def _add_month(anchor: date) -> date:
    year, month = anchor.year + anchor.month // 12, anchor.month % 12 + 1
    return date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))


def _relative_units(text: str, anchor: date) -> date | None:
    if _IN_A_MONTH.search(text):
        return _add_month(anchor)
    for word, days in _HE_DUAL.items():
        if re.search(rf"(?:בעוד|תוך|בתוך)\s+{word}(?!\S)", text):
            return anchor + timedelta(days=days)
    match = _IN_UNITS.search(text)
    if not match:
        return None
    if match[1] is not None:
        number, business, unit = _count(match[1]), bool(match[2]), match[3]
    else:
        number, unit_he = _count(match[4]), match[5]
        business = "עבודה" in unit_he or "עסקים" in unit_he
        unit = "week" if unit_he.startswith("שבוע") else "day"
    if number is None:
        return None
    if unit == "week":
        return anchor + timedelta(weeks=number)
    return _add_working_days(anchor, number) if business else anchor + timedelta(days=number)


def _weekday_phrase(text: str, anchor: date) -> date | None:
    if match := _HE_WEEKDAY.search(text):
        name = match[1] or match[3]
        modifier = match[2] or match[4] or ""
        weekday = _HE_WEEKDAYS.get(name.rstrip("'׳"))
        if weekday is not None:
            if modifier.startswith("הבא"):
                return _weekday_in_week(_week_start(anchor) + timedelta(days=7), weekday)
            return _next_weekday(anchor, weekday, include_today=modifier.startswith("הז"))
    if match := _EN_WEEKDAY.search(text):
        modifier, weekday = (match[1] or "").strip(), _EN_WEEKDAYS[match[2]]
        if modifier == "next":
            return _weekday_in_week(_week_start(anchor) + timedelta(days=7), weekday)
        return _next_weekday(anchor, weekday, include_today=modifier == "this")
    return None


def resolve_due_date(phrase: str | None, anchor: date) -> date | None:  # noqa: PLR0911, PLR0912 - a rule table
    """The date a due-date phrase names, counted from ``anchor`` (the sending date)."""
    if not phrase:
        return None
    text = " ".join(phrase.lower().replace("״", '"').split())
    if re.search(r"end of (the )?next week|סוף (ה)?שבוע הבא", text):
        return _end_of_week(anchor, next_week=True)  # before "next week", which is vague
    if not text or _VAGUE.search(text):
        return None
    if found := _explicit_date(text, anchor):
        return found
    if re.search(r"end of (the )?week|\beow\b|סוף (ה)?שבוע", text):
        return _end_of_week(anchor)
    if re.search(r"end of (the )?month|סוף (ה)?חודש", text):
        return _end_of_month(anchor)
    if re.search(r"day after tomorrow|מחרתיים", text):
        return anchor + timedelta(days=2)
    if re.search(r"\btomorrow\b|מחר", text):
        return anchor + timedelta(days=1)
    if re.search(r"\b(today|tonight|eod|cob|end of (the )?day)\b|היום|הערב|סוף היום", text):
        return anchor
    if found := _relative_units(text, anchor):
        return found
    if found := _weekday_phrase(text, anchor):
        return found
    if match := _DAY_OF_MONTH.search(text):
        day = int(match[1] or match[2])
        found = _safe_date(anchor.year, anchor.month, day)
        if found is not None and found < anchor:
            month = anchor.month % 12 + 1
            found = _safe_date(anchor.year + (anchor.month == 12), month, day)
        return found
    return None


def parse_header_date(value: str | None) -> datetime | date | None:  # noqa: PLR0911 - one per form
    """A header's sending date: RFC 2822, ISO, day-first numeric, or month names."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        pass
    try:
        return datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        pass
    lowered = " ".join(text.lower().split())
    if match := _ISO.search(lowered):
        return _safe_date(int(match[1]), int(match[2]), int(match[3]))
    if (match := _NUMERIC.search(lowered)) and match[3]:
        return _safe_date(_full_year(int(match[3])), int(match[2]), int(match[1]))
    # A header date must name its year; without one it is not trusted.
    for pattern, day_group, month_group in ((_DAY_MONTH, 1, 2), (_MONTH_DAY, 2, 1)):
        for match in pattern.finditer(lowered):
            month_number = _month_number(match[month_group])
            if month_number and match[3]:
                return _safe_date(int(match[3]), month_number, int(match[day_group]))
    return None


def as_date(value: datetime | date | None) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value
