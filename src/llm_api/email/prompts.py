"""Prompts for the email endpoints, Hebrew and English. JSON keys are always English.

The model is given only what needs a model: the cleaned body and the subject. Sender and
sending date come from the headers in code, and due dates are reported as the email
phrases them (code resolves them), so the model is never asked to do calendar arithmetic.
"""

from __future__ import annotations

from llm_api.chat.schemas import Language

EXTRACT_SYSTEM: dict[Language, str] = {
    Language.HEBREW: (
        "אתה מחלץ משימות מהודעות דואר אלקטרוני. החזר JSON בלבד במבנה "
        '{"tasks": [{"assigned_to", "title", "description", "due_date", "evidence"}]}. '
        "משימה היא פעולה שאדם מסוים בשמו מתבקש לבצע. "
        "assigned_to: שם האדם האחראי כפי שהוא מופיע בהודעה; אם לא צוין אדם מסוים "
        '(למשל "כולם", "הצוות", "מי שיכול") — null. '
        "title: כותרת קצרה בעברית. description: תיאור המשימה בעברית במשפט אחד או שניים. "
        'due_date: מועד היעד בדיוק כפי שנכתב בהודעה (למשל "מחר", "יום חמישי הבא", '
        '"25.1.2024"), או null אם לא צוין. evidence: ציטוט מדויק מההודעה שבו נאמרה המשימה. '
        'אם אין משימות, החזר {"tasks": []}.'
    ),
    Language.ENGLISH: (
        "You extract tasks from emails. Return JSON only, shaped as "
        '{"tasks": [{"assigned_to", "title", "description", "due_date", "evidence"}]}. '
        "A task is an action that a specific, named person is asked to do. "
        "assigned_to: that person's name as written in the email, or null when no specific "
        'person is named (e.g. "everyone", "the team", "whoever can"). '
        "title: a short English title. description: the task in one or two English sentences. "
        'due_date: the deadline exactly as the email words it (e.g. "tomorrow", "next Monday", '
        '"25.1.2024"), or null if none is given. evidence: an exact quote from the email that '
        'states the task. If there are no tasks, return {"tasks": []}.'
    ),
}

SUMMARY_SYSTEM: dict[Language, str] = {
    Language.HEBREW: (
        "אתה מסכם הודעות דואר אלקטרוני בעברית. החזר JSON בלבד במבנה "
        '{"title": "...", "summary": "..."}. title: כותרת קצרה להודעה. '
        "summary: סיכום עובדתי של עיקרי ההודעה, באורך של עד {length} תווים. "
        "אל תמציא פרטים שאינם בהודעה."
    ),
    Language.ENGLISH: (
        "You summarize emails in English. Return JSON only, shaped as "
        '{"title": "...", "summary": "..."}. title: a short title for the email. '
        "summary: a factual summary of the email's main points, at most {length} characters. "
        "Do not invent details that are not in the email."
    ),
}

TITLE_SYSTEM: dict[Language, str] = {
    Language.HEBREW: (
        "אתה נותן כותרות לשיחות. החזר JSON בלבד במבנה "
        '{"title": "..."}: כותרת בעברית של עד שש מילים שמתארת את ההודעה.'
    ),
    Language.ENGLISH: (
        "You give conversations a title. Return JSON only, shaped as "
        '{"title": "..."}: an English title of at most six words describing the message.'
    ),
}

EMAIL_LABEL = {Language.HEBREW: "נושא", Language.ENGLISH: "Subject"}

RETRY_NOTE: dict[Language, str] = {
    Language.HEBREW: (
        "התשובה הקודמת שלך לא תאמה את המבנה הנדרש: {problem}. "
        "החזר שוב JSON תקין בלבד, במבנה המבוקש."
    ),
    Language.ENGLISH: (
        "Your previous answer did not match the required shape: {problem}. "
        "Return valid JSON only, in the requested shape."
    ),
}


def email_user_message(language: Language, subject: str | None, text: str) -> str:
    if subject:
        return f"{EMAIL_LABEL[language]}: {subject}\n\n{text}"
    return text
