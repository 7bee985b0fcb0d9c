"""System prompts for chat. Kept byte-identical between turns so engines can reuse prefixes."""

from __future__ import annotations

from llm_api.chat.schemas import Language

SYSTEM_PROMPTS: dict[Language, str] = {
    Language.HEBREW: (
        "אתה עוזר מועיל, מדויק ואדיב. ענה תמיד בעברית תקנית וברורה, "
        "אלא אם המשתמש מבקש במפורש שפה אחרת."
    ),
    Language.ENGLISH: (
        "You are a helpful, accurate and courteous assistant. Answer in clear English "
        "unless the user explicitly asks for another language."
    ),
}
