"""Real-looking emails for the email tests: Hebrew first, MIME and pasted forms."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

IL = timezone(timedelta(hours=2))

HEBREW_BODY = (
    "שלום לכולם,\n\n"
    "יוסי, בבקשה תכין את מצגת הרבעון עד יום חמישי הבא.\n"
    "דנה תשלח ללקוח את הצעת המחיר המעודכנת מחר.\n"
    "כולם מתבקשים לעדכן את הלוחות.\n\n"
    "בברכה,\n"
    "עמית לוי\n"
    'מנהל פרויקטים | חברת דוגמה בע"מ\n'
)


def hebrew_mime() -> bytes:
    """multipart/alternative with base64 Hebrew text, HTML, and an attachment."""
    message = EmailMessage()
    message["From"] = Header("עמית לוי", "utf-8").encode() + " <amit@example.co.il>"
    message["To"] = "team@example.co.il"
    message["Subject"] = Header("הכנות לישיבת הרבעון", "utf-8").encode()
    message["Date"] = format_datetime(datetime(2024, 1, 21, 9, 30, tzinfo=IL))
    message["Message-ID"] = "<q1@example.co.il>"
    message.set_content(HEBREW_BODY, charset="utf-8", cte="base64")
    html = "<html><body><p>" + HEBREW_BODY.replace("\n", "<br>") + "</p></body></html>"
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message.as_bytes()


def html_only() -> str:
    html = (
        "<html><head><style>p{color:red}</style><script>alert(1)</script></head><body>"
        "<div dir='rtl'><p>שלום רב,</p><p>רונית, נא לאשר את <b>התקציב</b> עד 25.1.2024.</p>"
        "<ul><li>פריט ראשון</li><li>פריט שני</li></ul>"
        "<blockquote>ציטוט ישן שאין לקרוא</blockquote></div></body></html>"
    )
    encoded = base64.b64encode(html.encode()).decode()
    return (
        "From: Ronit <ronit@example.co.il>\r\n"
        "To: finance@example.co.il\r\n"
        "Subject: =?UTF-8?Q?=D7=AA=D7=A7=D7=A6=D7=99=D7=91?=\r\n"
        "Date: Mon, 22 Jan 2024 08:00:00 +0200\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n" + encoded + "\r\n"
    )


PASTED_HEBREW = (
    "מאת: amit@x.co.il\n"
    "נשלח: 2024-01-20 16:45\n"
    "אל: dana@x.co.il\n"
    "עותק: boss@x.co.il\n"
    "נושא: דוח חודשי\n"
    "\n"
    "דנה, תכיני בבקשה את הדוח החודשי עד סוף השבוע.\n"
    "\n"
    "תודה,\n"
    "עמית\n"
    "\n"
    "בתאריך יום ה׳, 18 בינואר 2024 ב-10:00, דנה <dana@x.co.il> כתבה:\n"
    "> אפשר לקבל את הנתונים של דצמבר?\n"
)

PASTED_ENGLISH = (
    "From: Sarah Cohen <sarah@example.com>\n"
    "Sent: Sunday, January 21, 2024 10:00 AM\n"
    "To: Dev Team <dev@example.com>\n"
    "Subject: Release checklist\n"
    "\n"
    "Hi all,\n\n"
    "Mike, please update the release notes by Thursday.\n"
    "Everyone should review the checklist.\n\n"
    "Best regards,\n"
    "Sarah\n"
    "--\n"
    "Sarah Cohen | VP R&D\n"
    "This email and any attachments are confidential.\n"
    "\n"
    "On Fri, Jan 19, 2024 at 3:00 PM Mike <mike@example.com> wrote:\n"
    "> Should I also update the wiki?\n"
)

FORWARDED = (
    "From: Noa <noa@example.co.il>\n"
    "Date: Tue, 23 Jan 2024 11:00:00 +0200\n"
    "Subject: Fwd: חשבונית\n"
    "\n"
    "אבי, תטפל בזה בבקשה עד מחר.\n"
    "\n"
    "---------- Forwarded message ---------\n"
    "From: Supplier <billing@supplier.com>\n"
    "Date: Mon, 22 Jan 2024 at 17:00\n"
    "Subject: חשבונית 1234\n"
    "To: <noa@example.co.il>\n"
    "\n"
    "מצורפת חשבונית 1234 לתשלום עד 31.1.2024.\n"
)

OUTLOOK_REPLY = (
    "Ok, Ruth will send the contract on Monday.\n"
    "\n"
    "From: Dan <dan@example.com>\n"
    "Sent: Sunday, January 21, 2024 9:00 AM\n"
    "To: Ruth <ruth@example.com>\n"
    "Subject: Contract\n"
    "\n"
    "Who sends the contract?\n"
)


def longest_answer(schema: dict[str, Any], filler: str = "x") -> Any:
    """A value filling every bound of a model schema: what a rambling model writes. With
    ``filler="7"`` (Gemma writes digits one a token) it is also the costliest in tokens."""
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        return longest_answer(options[0], filler)
    if schema["type"] == "string":
        return filler * schema["maxLength"]
    if schema["type"] == "array":
        return [longest_answer(schema["items"], filler) for _ in range(schema["maxItems"])]
    assert schema["type"] == "object"
    return {name: longest_answer(value, filler) for name, value in schema["properties"].items()}
