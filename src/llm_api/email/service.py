"""Email intelligence: tasks, summaries and titles that always fit their schema.

The code does what code does exactly (parsing, sender, sending date, due-date arithmetic,
length limits, evidence checks); the model gets only the cleaned text. Every model answer
is generated under a JSON schema (``response_format``), validated with Pydantic, retried
once with the validation problem, and otherwise refused with :class:`ModelOutputInvalid`.
An answer cut by ``max_tokens`` is never used: it is retried with more room. Each retry,
of either kind, counts in ``llm_api_schema_retries_total{feature="tasks"|"summary"|"title"}``.

Answers are bounded by their schema (every string and list has a bound, and the task list's
bounds are sized to the email), and ``max_tokens`` holds the longest answer the schema
admits: so a generation ends in bounded time, and a complete answer is not cut.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from llm_api.chat.language import resolve_language
from llm_api.chat.schemas import Language
from llm_api.chat.title_rules import usable_title
from llm_api.email.dates import resolve_due_date
from llm_api.email.parsing import ParsedEmail, normalize_whitespace, parse_email
from llm_api.email.prompts import (
    EXTRACT_SYSTEM,
    RETRY_NOTE,
    SUMMARY_SYSTEM,
    TITLE_SYSTEM,
    email_user_message,
)
from llm_api.email.schemas import (
    MAX_TASKS,
    TASK_EVIDENCE_CHARS,
    ModelSummary,
    ModelTask,
    ModelTaskList,
    ModelTitle,
    SummaryPublic,
    TaskPublic,
    TitlePublic,
    answer_tokens,
    clean_title,
    json_schema,
    task_list_schema,
)
from llm_api.engine.client import EngineClient, JsonObject
from llm_api.engine.models import ModelCatalog
from llm_api.errors import EngineBadResponse, InvalidRequest, ModelOutputInvalid, PayloadTooLarge
from llm_api.observability.metrics import SCHEMA_RETRIES, child
from llm_api.settings import Settings

log = logging.getLogger(__name__)
Answer = TypeVar("Answer", bound=BaseModel)
ISRAEL = ZoneInfo("Asia/Jerusalem")
_PROMPT_OVERHEAD_TOKENS = 400
_MAX_ATTEMPTS = 2

# "Assigned" to nobody in particular: such tasks are dropped (the original's rule).
_UNNAMED = {
    "everyone", "everybody", "all", "all of you", "you all", "y'all", "team", "the team",
    "whole team", "the whole team", "anyone", "anybody", "someone", "somebody", "whoever",
    "whoever can", "all staff", "staff", "us", "we", "you", "tbd", "unknown", "n/a", "none",
    "null", "unassigned", "nobody", "no one", "all team members", "team members",
    "כולם", "כולכם", "הצוות", "צוות", "כל הצוות", "מישהו", "מישהי", "מי שיכול", "מי שיכולה",
    "כל מי שיכול", "אף אחד", "כל אחד", "כל אחת", "אנחנו", "אתם", "לא ידוע", "לא צוין",
    "חברי הצוות", "כל חברי הצוות", "העובדים", "כל העובדים",
}  # fmt: skip
_UNNAMED_PREFIXES = ("whoever ", "anyone ", "someone ", "מי ש", "כל מי ש", "כל מי ")


@dataclass(frozen=True, slots=True)
class EmailLimits:
    max_email_chars: int = 100_000
    max_tokens_cap: int = 4096
    context_tokens: int = 8192
    # Off only to measure what the grammar costs (bench/email_bench.py); always on in the API.
    constrained: bool = True
    temperature: float = 0.0
    # Batch runs (llm-api emails) are background work: lower priority, capped slots.
    background: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> EmailLimits:
        values: dict[str, Any] = {
            "max_email_chars": settings.max_email_chars,
            "max_tokens_cap": settings.max_tokens_cap,
            "context_tokens": settings.max_model_len,
        }
        return cls(**(values | overrides))


class EmailService:
    def __init__(self, engine: EngineClient, models: ModelCatalog, limits: EmailLimits) -> None:
        self._engine = engine
        self._models = models
        self._limits = limits

    # --- the three operations -------------------------------------------------------------
    async def extract_tasks(
        self, content: str | bytes, language: Language = Language.AUTO
    ) -> list[TaskPublic]:
        email = self._parse(content)
        if not email.model_text and not email.subject:
            return []
        lang = resolve_language(language, email.model_text or email.subject or "")
        # Room for the longest answer this email's schema admits; the schema only shrinks
        # when the text is cut to fit.
        room = answer_tokens(task_list_schema(*task_room(email.model_text)))
        text = await self._fit(email.model_text, room)
        schema = task_list_schema(*task_room(text))
        messages = _messages(EXTRACT_SYSTEM[lang], email_user_message(lang, email.subject, text))
        answer = await self._generate(
            "tasks", messages=messages, answer_type=ModelTaskList, schema=schema,
            max_tokens=answer_tokens(schema), language=lang,
        )  # fmt: skip
        anchor = email.sending_date or datetime.now(ISRAEL).date()
        tasks = [_public_task(t, email, anchor) for t in answer.tasks if has_named_owner(t)]
        return _deduplicated(tasks)

    async def summarize(
        self, content: str | bytes, length: int = 100, language: Language = Language.AUTO
    ) -> SummaryPublic:
        email = self._parse(content)
        if not email.model_text and not email.subject:
            raise InvalidRequest("the email has no text to summarize", param="email_content")
        lang = resolve_language(language, email.model_text or email.subject or "")
        # The summary may overshoot (code clips it at a sentence or word), not ramble on.
        schema = json_schema(ModelSummary, summary=length * 2)
        max_tokens = answer_tokens(schema)
        text = await self._fit(email.model_text, max_tokens)
        system = SUMMARY_SYSTEM[lang].replace("{length}", str(length))
        messages = _messages(system, email_user_message(lang, email.subject, text))
        answer = await self._generate(
            "summary", messages=messages, answer_type=ModelSummary, schema=schema,
            max_tokens=max_tokens, language=lang,
        )  # fmt: skip
        return SummaryPublic(
            sender=email.sender,
            sending_date=_iso(email.sending_date),
            title=" ".join(answer.title.split()),
            summary=clip_text(answer.summary, length),
        )

    async def generate_title(self, message: str, language: Language = Language.AUTO) -> TitlePublic:
        self._check_size(message)
        lang = resolve_language(language, message)
        schema = json_schema(ModelTitle)
        text = await self._fit(message.strip(), answer_tokens(schema))
        messages = _messages(TITLE_SYSTEM[lang], text)
        answer = await self._generate(
            "title", messages=messages, answer_type=ModelTitle, schema=schema,
            max_tokens=answer_tokens(schema), language=lang,
        )  # fmt: skip
        # An echo of the instruction or a title in another language is no title: the
        # first words of the message are (the embedded base model produces both).
        title = usable_title(
            clean_title(answer.title), lang, instruction=TITLE_SYSTEM[lang], question=message
        )
        return TitlePublic(title=clean_title(title))

    # --- helpers --------------------------------------------------------------------------
    def _check_size(self, content: str | bytes) -> None:
        if len(content) > self._limits.max_email_chars:
            raise PayloadTooLarge(
                f"the email is longer than the limit of {self._limits.max_email_chars} characters"
            )

    def _parse(self, content: str | bytes) -> ParsedEmail:
        self._check_size(content)
        return parse_email(content)

    async def _fit(self, text: str, max_tokens: int) -> str:
        """Cut the text (at a line or word) so that prompt and answer fit the context."""
        retry_tokens = min(max_tokens * 2, self._limits.max_tokens_cap)
        budget = self._limits.context_tokens - retry_tokens - _PROMPT_OVERHEAD_TOKENS
        if budget <= 0 or len(text) <= budget:  # a token is never shorter than a character
            return text
        for _ in range(3):
            count = len(await self._engine.tokenize(text))
            if count <= budget:
                return text
            keep = int(len(text) * budget / count * 0.9)
            cut = max(text.rfind("\n", 0, keep), text.rfind(" ", 0, keep))
            text = text[: cut if cut > keep // 2 else keep]
        return text

    async def _generate(
        self,
        name: str,
        *,
        messages: list[dict[str, str]],
        answer_type: type[Answer],
        schema: dict[str, Any],
        max_tokens: int,
        language: Language,
    ) -> Answer:
        started = time.monotonic()
        conversation = list(messages)
        tokens = min(max_tokens, self._limits.max_tokens_cap)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            payload: dict[str, Any] = {
                "model": await self._models.model_id(),
                "messages": conversation,
                "max_tokens": tokens,
                "temperature": self._limits.temperature,
            }
            if self._limits.constrained:
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "strict": True, "schema": schema},
                }
            content, finish_reason = _choice(
                await self._engine.complete_chat(payload, background=self._limits.background)
            )
            if finish_reason == "length":
                # A cut answer is never used, even if it happens to parse: more room, again.
                log.info("email %s attempt %d cut at %d tokens", name, attempt, tokens)
                if tokens >= self._limits.max_tokens_cap or attempt == _MAX_ATTEMPTS:
                    break  # no tries left, or no more room: it would be cut the same way
                tokens = min(tokens * 2, self._limits.max_tokens_cap)
                child(SCHEMA_RETRIES, name).inc()
                continue
            try:
                answer = answer_type.model_validate_json(_without_fences(content))
            except ValidationError as exc:
                log.info(
                    "email %s attempt %d invalid: %d problems", name, attempt, exc.error_count()
                )
                if attempt < _MAX_ATTEMPTS:
                    child(SCHEMA_RETRIES, name).inc()
                conversation = [
                    *messages,
                    {"role": "assistant", "content": content[:2000]},
                    {"role": "user", "content": RETRY_NOTE[language].format(problem=_problem(exc))},
                ]
                continue
            log.info(
                "email %s ok after %d attempt(s) in %.2fs",
                name, attempt, time.monotonic() - started,
            )  # fmt: skip
            return answer
        raise ModelOutputInvalid(
            "the model did not produce a valid answer for this request, even after a retry"
        )


_SENTENCE_BREAK = re.compile(r"(?<=[.!?׃…])\s+")


def task_room(text: str) -> tuple[int, int]:
    """How many tasks, and how long an evidence quote, the model may write for this text.

    A task is stated in a sentence (its evidence), so the list is bounded by the sentences
    of three words or more, plus one for a sentence naming two people; a verbatim quote is
    never longer than the paragraph it comes from. On a CPU engine these bounds are what
    keep a weak model from writing eight tasks for a two-line email.
    """
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    sentences = [s for p in paragraphs for s in _SENTENCE_BREAK.split(p) if len(s.split()) >= 3]
    longest = max((len(p) for p in paragraphs), default=0)
    return min(len(sentences) + 1, MAX_TASKS), min(max(longest, 3), TASK_EVIDENCE_CHARS)


def _messages(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _choice(answer: JsonObject) -> tuple[str, str | None]:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EngineBadResponse("the inference engine answered without a choice")
    message = choices[0].get("message") or {}
    content = message.get("content") if isinstance(message, dict) else None
    reason = choices[0].get("finish_reason")
    return (content if isinstance(content, str) else ""), (
        reason if isinstance(reason, str) else None
    )


def _without_fences(content: str) -> str:
    """Unconstrained answers often come wrapped in a Markdown code fence."""
    text = content.strip()
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    return match[1] if match else text


def _problem(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "answer"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _clean_name(value: str | None) -> str:
    return " ".join((value or "").split()).strip(" .,:;!?\"'()-")


def has_named_owner(task: ModelTask) -> bool:
    owner = _clean_name(task.assigned_to).lower()
    if not owner or not task.title.strip() or not task.description.strip():
        return False
    if owner in _UNNAMED or owner.startswith(_UNNAMED_PREFIXES):
        return False
    # "כל הצוות", "all the developers", "the whole team" and the like.
    return not re.match(r"^(all|every|the whole|כל|כלל)\b", owner)


def verified_evidence(evidence: str | None, body: str) -> str | None:
    """The quote if it is verbatim in the body (whitespace-normalized), else ``None``."""
    if not evidence:
        return None
    quote = normalize_whitespace(unicodedata.normalize("NFC", evidence)).strip("\"'“”„«»")
    haystack = normalize_whitespace(unicodedata.normalize("NFC", body))
    if len(quote) < 3 or quote not in haystack:
        return None
    return quote


def _public_task(task: ModelTask, email: ParsedEmail, anchor: date) -> TaskPublic:
    return TaskPublic(
        sender=email.sender,
        sending_date=_iso(email.sending_date),
        assigned_to=_clean_name(task.assigned_to),
        title=" ".join(task.title.split()),
        description=" ".join(task.description.split()),
        due_date=_iso(resolve_due_date(task.due_date, anchor)),
        evidence=verified_evidence(task.evidence, email.body),
    )


def _deduplicated(tasks: list[TaskPublic]) -> list[TaskPublic]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for task in tasks:
        key = (task.assigned_to.casefold(), task.title.casefold())
        if key not in seen:
            seen.add(key)
            unique.append(task)
    return unique


_SENTENCE_END = re.compile(r"[.!?׃…](?=[\"'”)\]]*(\s|$))")


def clip_text(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut after a sentence if one ends late enough, else
    between words. Only a single word longer than the limit is cut inside itself."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    window = text[: limit + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() <= limit]
    if ends and ends[-1] >= limit // 2:
        return text[: ends[-1]].strip()
    cut = window.rfind(" ")
    if cut <= 0:
        return text[:limit]
    return text[:cut].rstrip(" ,;:-–—")
