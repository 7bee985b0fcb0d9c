"""Email parsing in code: MIME, encoded words, HTML, pasted headers, quotes, broken input."""

from __future__ import annotations

from datetime import date

import pytest

from llm_api.email.parsing import html_to_text, parse_email, strip_quotes_and_signatures
from tests.email import samples


def test_mime_with_hebrew_encoded_headers_and_base64_body() -> None:
    email = parse_email(samples.hebrew_mime())
    assert email.sender == "עמית לוי <amit@example.co.il>"
    assert email.subject == "הכנות לישיבת הרבעון"
    assert email.sending_date == date(2024, 1, 21)
    assert "יוסי, בבקשה תכין את מצגת הרבעון עד יום חמישי הבא." in email.body
    # multipart/alternative: the plain part wins, the HTML twin is not appended.
    assert email.body.count("יוסי") == 1
    assert "<br>" not in email.body


def test_mime_given_as_text_parses_the_same() -> None:
    raw = samples.hebrew_mime()
    assert parse_email(raw.decode("ascii")) == parse_email(raw)


def test_signature_and_sign_off_are_hidden_from_the_model_but_kept_in_body() -> None:
    email = parse_email(samples.hebrew_mime())
    assert "מנהל פרויקטים" not in email.model_text
    assert "בברכה" not in email.model_text
    assert "דנה תשלח ללקוח" in email.model_text
    assert "מנהל פרויקטים" in email.body


def test_html_only_body_becomes_text() -> None:
    email = parse_email(samples.html_only())
    assert email.subject == "תקציב"
    assert email.sender == "Ronit <ronit@example.co.il>"
    assert email.sending_date == date(2024, 1, 22)
    assert "רונית, נא לאשר את התקציב עד 25.1.2024." in email.body
    assert "- פריט ראשון" in email.body
    assert "alert" not in email.body
    assert "color" not in email.body
    # The HTML blockquote is a quoted reply: in the body, not in what the model reads.
    assert "> ציטוט ישן" in email.body
    assert "ציטוט" not in email.model_text


def test_pasted_hebrew_pseudo_headers() -> None:
    email = parse_email(samples.PASTED_HEBREW)
    assert email.sender == "amit@x.co.il"
    assert email.sending_date == date(2024, 1, 20)
    assert email.subject == "דוח חודשי"
    assert email.model_text == "דנה, תכיני בבקשה את הדוח החודשי עד סוף השבוע."
    assert "אפשר לקבל את הנתונים" in email.body
    assert "נשלח:" not in email.body


def test_pasted_english_outlook_headers_signature_and_reply() -> None:
    email = parse_email(samples.PASTED_ENGLISH)
    assert email.sender == "Sarah Cohen <sarah@example.com>"
    assert email.sending_date == date(2024, 1, 21)
    assert email.subject == "Release checklist"
    assert email.model_text == (
        "Hi all,\n\nMike, please update the release notes by Thursday.\n"
        "Everyone should review the checklist."
    )
    assert "confidential" not in email.model_text
    assert "wiki" in email.body


def test_forwarded_thread_keeps_forwarded_content_and_top_sender() -> None:
    email = parse_email(samples.FORWARDED)
    assert email.sender == "Noa <noa@example.co.il>"
    assert email.sending_date == date(2024, 1, 23)
    assert "אבי, תטפל בזה בבקשה עד מחר." in email.model_text
    assert "מצורפת חשבונית 1234 לתשלום עד 31.1.2024." in email.model_text


def test_outlook_reply_history_is_cut() -> None:
    email = parse_email(samples.OUTLOOK_REPLY)
    assert email.sender is None
    assert email.sending_date is None
    assert email.model_text == "Ok, Ruth will send the contract on Monday."
    assert "Who sends the contract?" in email.body


def test_bare_body_has_no_sender_or_date() -> None:
    email = parse_email("  ליאור, תבדוק בבקשה את השרת עד מחר.\n")
    assert email.sender is None
    assert email.sending_date is None
    assert email.subject is None
    assert email.body == email.model_text == "ליאור, תבדוק בבקשה את השרת עד מחר."


def test_body_line_with_colon_is_not_a_header() -> None:
    email = parse_email("הערה: הפגישה נדחתה.\nמשה יעדכן את כולם.")
    assert email.sender is None
    assert email.body.startswith("הערה: הפגישה נדחתה.")


def test_only_quotes_falls_back_to_the_whole_body() -> None:
    text = "> old line one\n> old line two"
    assert strip_quotes_and_signatures(text) == text


def test_hebrew_reply_intro_on_two_lines() -> None:
    body = "מעולה, תודה.\nשרון תעדכן.\n\nבתאריך 21 בינואר 2024,\nרון <ron@x.co.il> כתב:\n> ישן"
    assert strip_quotes_and_signatures(body) == "מעולה, תודה.\nשרון תעדכן."


def test_html_to_text_line_breaks() -> None:
    assert html_to_text("<p>א</p><p>ב<br>ג</p>") == "א\n\nב\nג"


@pytest.mark.parametrize(
    "raw",
    [
        # a multipart whose boundary never appears
        "From: a@b.c\nSubject: x\nContent-Type: multipart/mixed; boundary=zzz\n\n"
        "שלום, נועה תבדוק.\n",
        # an unknown charset and broken base64
        "From: a@b.c\nContent-Type: text/plain; charset=x-nonsense\n"
        "Content-Transfer-Encoding: base64\n\n%%%not base64%%%\n",
        # a broken encoded word and a nonsense date
        "From: =?UTF-8?B?####?= <a@b.c>\nDate: not a date\nSubject: =?bogus?Q?x?=\n\nbody\n",
        # undecodable bytes in an 8bit body
        b"From: a@b.c\nContent-Type: text/plain; charset=utf-8\n\n\xff\xfe\xd7\xa9\xd7",
        "",
    ],
)
def test_broken_input_is_read_as_far_as_possible(raw: str | bytes) -> None:
    email = parse_email(raw)
    assert isinstance(email.body, str)
    assert isinstance(email.model_text, str)


def test_broken_multipart_keeps_its_text() -> None:
    raw = (
        "From: a@b.c\nSubject: x\nContent-Type: multipart/mixed; boundary=zzz\n\n"
        "שלום, נועה תבדוק.\n"
    )
    assert "נועה תבדוק" in parse_email(raw).body


def test_windows_1255_bytes_and_pasted_unicode_with_the_same_header() -> None:
    head = (
        "From: a@b.c\nSubject: x\nContent-Type: text/plain; charset=windows-1255\n"
        "Content-Transfer-Encoding: 8bit\n\n"
    )
    body = "גלית, תשלחי את הקובץ."
    # As bytes (an .eml file), the declared charset is the truth ...
    assert parse_email(head.encode() + body.encode("cp1255")).body == body
    # ... as text (JSON), the characters already are Unicode.
    assert parse_email(head + body).body == body


def test_pasted_headers_with_bidi_marks() -> None:
    text = "\u200fמאת: \u200fרון <ron@x.co.il>\n\u200fנשלח: 21/01/2024 10:00\n\nרון יבדוק."
    email = parse_email(text)
    assert email.sender == "רון <ron@x.co.il>"
    assert email.sending_date == date(2024, 1, 21)
    assert email.body == "רון יבדוק."
