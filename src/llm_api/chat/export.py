"""A stored conversation as a JSON document or as Markdown."""

from __future__ import annotations

from llm_api.chat.schemas import MessagePublic, SessionPublic, SessionSummary
from llm_api.chat.store import SessionHistory, SessionInfo

_ROLE_HEADINGS = {"user": "User", "assistant": "Assistant", "system": "System"}


def summary(info: SessionInfo) -> SessionSummary:
    return SessionSummary(
        session_id=info.id,
        title=info.title,
        language=info.language,
        created_at=info.created_at,
        updated_at=info.updated_at,
        message_count=info.message_count,
    )


def public(history: SessionHistory) -> SessionPublic:
    return SessionPublic(
        **summary(history.info).model_dump(),
        messages=[
            MessagePublic(
                role=m.role,
                content=m.content,
                status=m.status,
                created_at=m.created_at,
            )
            for m in history.messages
        ],
    )


def markdown(history: SessionHistory) -> str:
    info = history.info
    lines = [
        f"# {info.title or info.id}",
        "",
        f"- session: `{info.id}`",
        f"- language: {info.language}",
        f"- created: {info.created_at.isoformat()}",
        f"- updated: {info.updated_at.isoformat()}",
    ]
    for message in history.messages:
        heading = _ROLE_HEADINGS.get(message.role, message.role)
        note = "" if message.status == "complete" else f" ({message.status})"
        lines += ["", f"## {heading}{note}", "", message.content]
    return "\n".join(lines) + "\n"
