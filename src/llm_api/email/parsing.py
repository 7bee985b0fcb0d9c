"""Email parsing in code, before any model call.

``email_content`` arrives in one of three shapes, tried in this order:

1. a raw RFC 822 message (headers, MIME parts, base64 / quoted-printable, encoded words),
   parsed by the standard library's :mod:`email` with ``policy.default``;
2. pasted text that starts with pseudo-headers, Hebrew or English
   (``מאת:``, ``נשלח:``, ``אל:``, ``עותק:``, ``נושא:``, ``From:``, ``Sent:``, ``Subject:``…);
3. a bare body.

The result keeps two texts: ``body`` (everything the email says, quotes included: evidence
is checked against it) and ``model_text`` (quoted replies, signatures and disclaimers
removed: what the model sees). Nothing here raises on bad input: a broken message is read
as far as it goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from bs4 import BeautifulSoup, Tag

from llm_api.email.dates import as_date, parse_header_date

_RFC822_HEADERS = {
    "from", "to", "cc", "bcc", "date", "subject", "message-id", "mime-version",
    "content-type", "content-transfer-encoding", "received", "return-path", "reply-to",
    "delivered-to", "x-mailer", "sender", "in-reply-to", "references", "thread-topic",
}  # fmt: skip
# Pseudo-header names as people paste them, mapped to one role each.
_PSEUDO_HEADERS = {
    "from": "from", "מאת": "from", "sender": "from", "שולח": "from",
    "sent": "date", "date": "date", "נשלח": "date", "תאריך": "date",
    "to": "to", "אל": "to", "cc": "cc", "עותק": "cc", "bcc": "cc",
    "subject": "subject", "נושא": "subject", "importance": "other", "חשיבות": "other",
}  # fmt: skip
# Leading bidi marks (RLM, LRM, embeddings, isolates) come with text pasted from Outlook.
_BIDI_MARKS = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_HEADER_LINE = re.compile(
    r"^[\s\u200e\u200f\u202a-\u202e\u2066-\u2069]*\**"
    r"([A-Za-z\u05d0-\u05ea][\w\u05d0-\u05ea-]{0,30})\**\s*:\s*(.*)$"
)

_FORWARD_MARKER = re.compile(
    r"^\s*-{2,}\s*(forwarded message|original message|הודעה שהועברה|הודעה מקורית|"
    r"begin forwarded message)\s*-{2,}\s*$|^\s*begin forwarded message:\s*$",
    re.IGNORECASE,
)
_FORWARDED = re.compile(r"forwarded|הועברה", re.IGNORECASE)
_REPLY_INTRO = re.compile(
    r"^\s*(on\b.{0,200}\bwrote:|בתאריך\b.{0,200}(נכתב|כתב|כתבה)\s*:|.{0,200}\bכתב(ה)?\s*:)\s*$",
    re.IGNORECASE,
)
_REPLY_INTRO_START = re.compile(r"^\s*(on\s|בתאריך\s)", re.IGNORECASE)
_SIGNATURE_DELIMITER = re.compile(r"^--\s?$")
_SIGN_OFF = re.compile(
    r"^\s*(best regards|kind regards|regards|best|thanks|thank you|cheers|sincerely|"
    r"בברכה|תודה|תודה רבה|בברכה רבה|שלך|להתראות|בהוקרה)\s*[,.!]?\s*$",
    re.IGNORECASE,
)
_DISCLAIMER = re.compile(
    r"^\s*(sent from my|נשלח מה|נשלח מ-|this (e-?mail|message) (and any attachments? )?"
    r"(is|are|may|contains?)|confidentiality notice|disclaimer|הודעה זו (וכל|עשויה|מיועדת)|"
    r"המידע (בהודעה|בדואר) (זו|זה)|הבהרה משפטית)",
    re.IGNORECASE,
)
_SIGN_OFF_WINDOW = 8


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    sender: str | None
    sent_at: datetime | date | None
    subject: str | None
    body: str
    model_text: str
    defects: list[str] = field(default_factory=list)

    @property
    def sending_date(self) -> date | None:
        return as_date(self.sent_at)


def parse_email(content: str | bytes) -> ParsedEmail:
    """Read any of the three shapes; never raises on malformed input."""
    if isinstance(content, bytes):
        if _looks_like_rfc822(content.decode("utf-8", "replace")):
            return _from_message(BytesParser(policy=policy.default).parsebytes(content), False)
        content = content.decode("utf-8", "replace")
    text = content.replace("\r\n", "\n").lstrip("\ufeff")
    if _looks_like_rfc822(text):
        # As bytes: the str parser turns non-ASCII 8-bit bodies into escape sequences.
        raw = text.encode("utf-8", "surrogateescape")
        return _from_message(BytesParser(policy=policy.default).parsebytes(raw), True)
    return _from_pasted(text)


# --- RFC 822 --------------------------------------------------------------------------
def _looks_like_rfc822(text: str) -> bool:
    """Headers known to RFC 822 from the first line on, ending in a blank line."""
    names: set[str] = set()
    for line in text.lstrip("\n").split("\n"):
        if not line.strip():
            break
        if line[:1] in {" ", "\t"} and names:
            continue  # folded continuation
        match = re.match(r"^([!-9;-~]+):", line)
        if not match:
            return False
        names.add(match[1].lower())
    known = names & _RFC822_HEADERS
    return bool(known) and ("from" in names or "content-type" in names or "received" in names)


def _from_message(message: EmailMessage, unicode_source: bool) -> ParsedEmail:
    """``unicode_source``: the message came as text, so its unencoded parts are Unicode
    (re-encoded as UTF-8 here) whatever charset they declare."""
    defects = [type(d).__name__ for d in message.defects]
    body = _message_body(message, defects, unicode_source)
    return ParsedEmail(
        sender=_header(message, "from"),
        sent_at=_message_date(message),
        subject=_header(message, "subject"),
        body=body,
        model_text=strip_quotes_and_signatures(body),
        defects=defects,
    )


def _header(message: Message, name: str) -> str | None:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError, LookupError):
        return None  # a header the policy cannot even decode is as good as absent
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _message_date(message: Message) -> datetime | date | None:
    try:
        header = message.get("date")
        stamp = getattr(header, "datetime", None)
    except (ValueError, IndexError, TypeError, LookupError):
        return None
    if isinstance(stamp, datetime):
        return stamp
    if header is None:
        # Pasted Outlook headers say "Sent:" rather than "Date:".
        return parse_header_date(_header(message, "sent"))
    return parse_header_date(str(header))


def _message_body(message: EmailMessage, defects: list[str], unicode_source: bool) -> str:
    part: Message | None
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except (KeyError, ValueError, LookupError, AttributeError):
        part = None
    if part is None:
        # No body by the rules (e.g. broken multipart): take the first text part there is.
        part = next(
            (p for p in message.walk() if p.get_content_maintype() == "text" and not _attached(p)),
            None,
        )
    if part is None:
        if message.is_multipart():
            return ""
        part = message
    text = _part_text(part, defects, unicode_source)
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return text.replace("\r\n", "\n").strip()


def _attached(part: Message) -> bool:
    return (part.get_content_disposition() or "") == "attachment"


def _part_text(part: Message, defects: list[str], unicode_source: bool) -> str:
    """The part's text, decoded by hand so that a bad charset or CTE never raises."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset()
    encoded = str(part.get("content-transfer-encoding", "")).strip().lower()
    if not payload.isascii() and (
        charset in {None, "us-ascii", "ascii"}
        or (unicode_source and encoded not in {"base64", "quoted-printable"})
    ):
        charset = "utf-8"  # 8-bit text that arrived as Unicode, or undeclared
    try:
        return payload.decode(charset or "utf-8", "replace")
    except LookupError:
        defects.append("UnknownCharset")
        return payload.decode("utf-8", "replace")


# --- HTML ---------------------------------------------------------------------------------
_BLOCK_TAGS = ["p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr"]


def html_to_text(html: str) -> str:
    """Readable text from an HTML body; blockquotes become ``>`` lines (quoted replies)."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "head", "title", "meta"]):
        tag.decompose()
    for quote in soup.find_all("blockquote"):
        if isinstance(quote, Tag):
            inner = quote.get_text("\n")
            lines = [f"> {line.strip()}" for line in inner.split("\n") if line.strip()]
            quote.replace_with("\n" + "\n".join(lines) + "\n")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        if isinstance(tag, Tag):
            tag.insert_before("\n")
            tag.insert_after("\n")
    for item in soup.find_all("li"):
        if isinstance(item, Tag):
            item.insert(0, "- ")
    text = soup.get_text()
    lines = [" ".join(line.split()) for line in text.replace("\xa0", " ").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- pasted text ----------------------------------------------------------------------
def _from_pasted(text: str) -> ParsedEmail:
    lines = text.strip("\n").split("\n")
    fields: dict[str, str] = {}
    consumed = 0
    for index, line in enumerate(lines):
        if not line.strip():
            if fields:
                consumed = index + 1
                break
            continue
        match = _HEADER_LINE.match(line)
        role = _PSEUDO_HEADERS.get(match[1].lower()) if match else None
        if not match or role is None:
            consumed = index if fields else 0
            break
        fields.setdefault(role, _BIDI_MARKS.sub("", match[2]).strip())
        consumed = index + 1
    body = "\n".join(lines[consumed:]).strip() if fields else text.strip()
    return ParsedEmail(
        sender=fields.get("from") or None,
        sent_at=parse_header_date(fields.get("date")),
        subject=fields.get("subject") or None,
        body=body,
        model_text=strip_quotes_and_signatures(body),
    )


# --- quotes and signatures --------------------------------------------------------------
def _header_block_at(lines: list[str], index: int) -> bool:
    """An Outlook-style quoted header block (From: … then Sent:/Date: …) starts here."""
    match = _HEADER_LINE.match(lines[index])
    if not match or _PSEUDO_HEADERS.get(match[1].lower()) != "from":
        return False
    for line in lines[index + 1 : index + 4]:
        follow = _HEADER_LINE.match(line)
        if follow and _PSEUDO_HEADERS.get(follow[1].lower()) in {"date", "to", "subject"}:
            return True
    return False


def strip_quotes_and_signatures(body: str) -> str:
    """What the model should read: the newest message, without quotes or signatures.

    Forwarded content is kept (it is usually what the email is about); a reply's quoted
    history, ``>`` lines, a ``-- `` signature, sign-offs near the end and disclaimers are
    dropped. If nothing would be left, the whole body is returned instead.
    """
    lines = body.split("\n")
    kept: list[str] = []
    forwarded = False
    for index, line in enumerate(lines):
        if _FORWARD_MARKER.match(line):
            if not _FORWARDED.search(line):
                break  # "-----Original Message-----": a reply's history
            forwarded = True
            kept.append(line)
            continue
        pair = line + " " + lines[index + 1] if index + 1 < len(lines) else line
        if _REPLY_INTRO.match(line) or (
            _REPLY_INTRO_START.match(line) and _REPLY_INTRO.match(pair)
        ):
            break
        if not forwarded and kept and _header_block_at(lines, index):
            break
        if _SIGNATURE_DELIMITER.match(line) or _DISCLAIMER.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    if not forwarded:
        tail = [i for i, line in enumerate(kept) if line.strip()][-_SIGN_OFF_WINDOW:]
        for i in tail:
            if _SIGN_OFF.match(kept[i]):
                kept = kept[:i]
                break
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return text or body.strip()


def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())
