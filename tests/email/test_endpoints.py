"""The three email endpoints against the fake engine: valid, invalid, violating and garbage
model output, plus the request limits."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from llm_api.email.schemas import answer_chars, answer_tokens
from tests.conftest import gateway_settings, serve_gateway
from tests.email import samples
from tests.fakes import FakeEngine


def replies(*answers: object) -> deque[str]:
    return deque(a if isinstance(a, str) else orjson.dumps(a).decode() for a in answers)


def task(assigned_to: str | None, title: str, due: str | None = None, evidence: str | None = None,
         description: str | None = None) -> dict[str, object]:  # fmt: skip
    return {
        "assigned_to": assigned_to,
        "title": title,
        "description": description or f"{title}.",
        "due_date": due,
        "evidence": evidence,
    }


@pytest.fixture
async def small_client(fake_engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    settings = gateway_settings(fake_engine.url, max_email_chars=5000)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield http


# --- task extraction ------------------------------------------------------------------
async def test_extract_keeps_named_tasks_with_header_fields_and_resolved_dates(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies(
        {
            "tasks": [
                task("יוסי", "הכנת מצגת הרבעון", "יום חמישי הבא",
                     "יוסי, בבקשה תכין את מצגת הרבעון עד יום חמישי הבא."),
                task("דנה", "שליחת הצעת מחיר", "מחר",
                     "דנה   תשלח ללקוח את הצעת\nהמחיר המעודכנת מחר"),
                task("כולם", "עדכון לוחות", None, "כולם מתבקשים לעדכן את הלוחות."),
                task("הצוות", "משימה קבוצתית"),
                task(None, "ללא אחראי"),
                task("  ", "אחראי ריק"),
                task("כל חברי הצוות", "עוד משימה קבוצתית"),
                task("מי שיכול", "התנדבות"),
            ]
        }
    )  # fmt: skip
    response = await client.post(
        "/api/tasks/extract", json={"email_content": samples.hebrew_mime().decode("ascii")}
    )
    assert response.status_code == 200, response.text
    assert response.json() == [
        {
            "sender": "עמית לוי <amit@example.co.il>",
            "sending_date": "2024-01-21",
            "assigned_to": "יוסי",
            "title": "הכנת מצגת הרבעון",
            "description": "הכנת מצגת הרבעון.",
            "due_date": "2024-02-01",
            "evidence": "יוסי, בבקשה תכין את מצגת הרבעון עד יום חמישי הבא.",
        },
        {
            "sender": "עמית לוי <amit@example.co.il>",
            "sending_date": "2024-01-21",
            "assigned_to": "דנה",
            "title": "שליחת הצעת מחיר",
            "description": "שליחת הצעת מחיר.",
            "due_date": "2024-01-22",
            # whitespace differs from the email: normalized, still verbatim
            "evidence": "דנה תשלח ללקוח את הצעת המחיר המעודכנת מחר",
        },
    ]
    assert "\\u05" not in response.text  # Hebrew goes out unescaped


async def test_extract_request_is_schema_constrained_and_hebrew(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies({"tasks": []})
    response = await client.post(
        "/api/tasks/extract", json={"email_content": samples.PASTED_HEBREW}
    )
    assert response.status_code == 200
    assert response.json() == []
    (request,) = fake_engine.state.requests
    assert request["stream"] is False
    schema = request["response_format"]["json_schema"]["schema"]
    assert request["response_format"]["type"] == "json_schema"
    assert schema["required"] == ["tasks"]
    item = schema["properties"]["tasks"]["items"]
    assert set(item["properties"]) == {
        "assigned_to",
        "title",
        "description",
        "due_date",
        "evidence",
    }
    assert "$defs" not in orjson.dumps(schema).decode()
    system, user = request["messages"]
    assert system["role"] == "system"
    assert "משימות" in system["content"]
    # The model sees the subject and the cleaned body only: no headers, no quoted reply.
    assert user["content"] == "נושא: דוח חודשי\n\nדנה, תכיני בבקשה את הדוח החודשי עד סוף השבוע."


async def test_evidence_not_in_the_email_becomes_null(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies(
        {"tasks": [task("Mike", "Release notes", "Thursday", "Mike will write the notes today")]}
    )
    response = await client.post(
        "/api/tasks/extract", json={"email_content": samples.PASTED_ENGLISH}
    )
    assert response.status_code == 200
    (only,) = response.json()
    assert only["evidence"] is None
    assert only["sender"] == "Sarah Cohen <sarah@example.com>"
    assert only["sending_date"] == "2024-01-21"
    assert only["due_date"] == "2024-01-25"
    assert "English" in fake_engine.state.requests[0]["messages"][0]["content"]


async def test_explicit_language_overrides_detection(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies({"tasks": []})
    await client.post(
        "/api/tasks/extract", json={"email_content": samples.PASTED_ENGLISH, "language": "hebrew"}
    )
    assert "משימות" in fake_engine.state.requests[0]["messages"][0]["content"]


async def test_invalid_json_is_retried_once_with_the_problem(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies('{"tasks": [', {"tasks": [task("נועה", "בדיקה")]})
    response = await client.post("/api/tasks/extract", json={"email_content": "נועה, תבדקי."})
    assert response.status_code == 200
    assert [t["assigned_to"] for t in response.json()] == ["נועה"]
    _first, second = fake_engine.state.requests
    assert len(second["messages"]) == 4
    assert second["messages"][2] == {"role": "assistant", "content": '{"tasks": ['}
    assert "JSON" in second["messages"][3]["content"]


@pytest.mark.parametrize(
    "bad",
    [
        "I could not find any tasks, sorry!",  # garbage
        "{not json at all",  # invalid JSON
        '{"tasks": [{"assigned_to": "Dan"}]}',  # violates the schema: fields missing
        '{"tasks": "none"}',  # violates the schema: wrong type
        "[]",  # valid JSON, wrong shape
    ],
)
async def test_output_still_invalid_after_retry_is_a_typed_502(
    client: httpx.AsyncClient, fake_engine: FakeEngine, bad: str
) -> None:
    fake_engine.state.replies = replies(bad)
    response = await client.post("/api/tasks/extract", json={"email_content": "Dan, call me."})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "model_output_invalid"
    assert bad not in error["message"]
    assert len(fake_engine.state.requests) == 2


async def test_cut_answer_is_never_returned(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    # Parses fine, but the engine says max_tokens cut it: not to be trusted.
    fake_engine.state.finish_reason = "length"
    fake_engine.state.replies = replies({"tasks": [task("Dan", "Call")]})
    response = await client.post("/api/tasks/extract", json={"email_content": "Dan, call me."})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "model_output_invalid"
    first, second = fake_engine.state.requests
    assert second["max_tokens"] == 2 * first["max_tokens"]


async def test_fenced_json_is_accepted(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    fake_engine.state.replies = replies('```json\n{"tasks": []}\n```')
    response = await client.post("/api/tasks/extract", json={"email_content": "FYI only."})
    assert response.status_code == 200
    assert response.json() == []


async def test_broken_mime_is_never_a_500(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies({"tasks": []})
    raw = (
        "From: =?UTF-8?B?####?= <a@b.c>\nDate: 99 Foo 2024\n"
        "Content-Type: multipart/mixed; boundary=zzz\nContent-Transfer-Encoding: base64\n\n"
        "--zzz\nContent-Type: text/plain; charset=x-unknown\n\n\x00%%%\n"
    )
    response = await client.post("/api/tasks/extract", json={"email_content": raw})
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize("content", ["", "   ", "\n\t \n"])
async def test_empty_email_is_422(client: httpx.AsyncClient, content: str) -> None:
    for path in ("/api/tasks/extract", "/api/summarization/summarize"):
        response = await client.post(path, json={"email_content": content})
        assert response.status_code == 422
        assert response.json()["error"]["param"] == "email_content"


async def test_email_over_the_limit_is_413_with_the_limit(
    small_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    for path in ("/api/tasks/extract", "/api/summarization/summarize"):
        response = await small_client.post(path, json={"email_content": "א" * 5001})
        assert response.status_code == 413
        assert "5000" in response.json()["error"]["message"]
    response = await small_client.post("/api/title/generate", json={"user_message": "x " * 2501})
    assert response.status_code == 413
    assert fake_engine.state.requests == []


async def test_email_at_the_limit_is_accepted(
    small_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies({"tasks": []})
    response = await small_client.post("/api/tasks/extract", json={"email_content": "א" * 5000})
    assert response.status_code == 200


# --- summaries --------------------------------------------------------------------------
async def test_summary_is_cut_at_a_sentence_or_word_boundary(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    long_summary = (
        "עמית מבקש מיוסי להכין את מצגת הרבעון. דנה תשלח את הצעת המחיר ללקוח מחר בבוקר, "
        "וכל הצוות יעדכן את הלוחות."
    )
    fake_engine.state.replies = replies({"title": "הכנות לישיבה", "summary": long_summary})
    response = await client.post(
        "/api/summarization/summarize",
        json={"email_content": samples.hebrew_mime().decode("ascii"), "length": 50},
    )
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "sender": "עמית לוי <amit@example.co.il>",
        "sending_date": "2024-01-21",
        "title": "הכנות לישיבה",
        "summary": "עמית מבקש מיוסי להכין את מצגת הרבעון.",
    }
    request = fake_engine.state.requests[0]
    assert "50" in request["messages"][0]["content"]
    summary_schema = request["response_format"]["json_schema"]["schema"]["properties"]["summary"]
    assert summary_schema["maxLength"] == 100


async def test_summary_without_sentence_end_is_cut_between_words(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    words = "the quarterly report needs final numbers from finance and legal review before"
    fake_engine.state.replies = replies({"title": "Report", "summary": words})
    response = await client.post(
        "/api/summarization/summarize", json={"email_content": "Bare body text.", "length": 30}
    )
    summary = response.json()["summary"]
    assert len(summary) <= 30
    assert words.startswith(summary)
    assert words[len(summary)] == " "  # never mid-word
    assert response.json()["sender"] is None
    assert response.json()["sending_date"] is None


@pytest.mark.parametrize("length", [19, 2001, 0, -5])
async def test_summary_length_out_of_range_is_422(client: httpx.AsyncClient, length: int) -> None:
    response = await client.post(
        "/api/summarization/summarize", json={"email_content": "שלום", "length": length}
    )
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "length"


async def test_summary_with_blank_title_is_retried_then_502(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies({"title": "   ", "summary": "משהו"})
    response = await client.post("/api/summarization/summarize", json={"email_content": "שלום"})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "model_output_invalid"


# --- titles -----------------------------------------------------------------------------
async def test_title_has_at_most_six_words_without_quotes(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies({"title": '"תכנון טיול משפחתי לצפון הארץ בחופשת הפסח."'})
    response = await client.post(
        "/api/title/generate", json={"user_message": "אני רוצה לתכנן טיול משפחתי לצפון בפסח"}
    )
    assert response.status_code == 200
    assert response.json() == {"title": "תכנון טיול משפחתי לצפון הארץ בחופשת"}
    assert "עברית" in fake_engine.state.requests[0]["messages"][0]["content"]


async def test_title_in_english(client: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    fake_engine.state.replies = replies({"title": "Python list sorting."})
    response = await client.post("/api/title/generate", json={"user_message": "How to sort lists?"})
    assert response.json() == {"title": "Python list sorting"}
    assert "English" in fake_engine.state.requests[0]["messages"][0]["content"]


@pytest.mark.parametrize(
    ("answer", "message", "expected"),
    [
        # The instruction repeated back (the embedded base model's habit) …
        ("כותרת בעברית של עד שש מילים", "איך מכינים חומוס ביתי?", "איך מכינים חומוס ביתי?"),
        ("an English title of at most six words", "How do I bake bread?", "How do I bake bread?"),
        # … or a title in the other language: the first words of the message instead.
        (
            "Homemade hummus",
            "איך מכינים חומוס ביתי טעים ורך במיוחד?",
            "איך מכינים חומוס ביתי טעים ורך",
        ),
    ],
)
async def test_title_that_is_no_title_falls_back_to_the_first_words(
    client: httpx.AsyncClient, fake_engine: FakeEngine, answer: str, message: str, expected: str
) -> None:
    fake_engine.state.replies = replies({"title": answer})
    response = await client.post("/api/title/generate", json={"user_message": message})
    assert response.status_code == 200
    assert response.json() == {"title": expected}


async def test_title_of_only_punctuation_is_invalid(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = replies({"title": '"..."'}, {"title": "כותרת"})
    response = await client.post("/api/title/generate", json={"user_message": "שלום"})
    assert response.json() == {"title": "כותרת"}
    assert len(fake_engine.state.requests) == 2


async def test_title_needs_a_message(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/title/generate", json={"user_message": "  "})
    assert response.status_code == 422


async def test_cut_answer_at_the_token_cap_is_not_retried_the_same_way(
    fake_engine: FakeEngine,
) -> None:
    fake_engine.state.finish_reason = "length"
    fake_engine.state.replies = replies({"tasks": []})
    settings = gateway_settings(fake_engine.url, max_tokens_cap=512, default_max_tokens=256)
    # This email's longest answer (three tasks) needs more than the cap: the first try has
    # the whole cap already.
    email = samples.PASTED_ENGLISH
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/api/tasks/extract", json={"email_content": email})
    assert response.status_code == 502
    assert [r["max_tokens"] for r in fake_engine.state.requests] == [512]


async def test_long_email_is_cut_to_fit_the_context(fake_engine: FakeEngine) -> None:
    fake_engine.state.replies = replies({"tasks": []})
    settings = gateway_settings(
        fake_engine.url, max_model_len=1024, max_tokens_cap=512, default_max_tokens=256
    )
    words = [f"מילה{i}" for i in range(600)]
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/api/tasks/extract", json={"email_content": " ".join(words)})
    assert response.status_code == 200
    sent = fake_engine.state.requests[0]["messages"][1]["content"].split()
    # context 1024 - answer room 512 - prompt overhead 400 = 112 tokens (one a word here)
    assert 50 <= len(sent) <= 112
    assert sent == words[: len(sent)]  # cut at a word, from the end


# --- schema retries are counted -------------------------------------------------------------
async def schema_retries(client: httpx.AsyncClient, feature: str) -> float:
    text = (await client.get("/metrics")).text
    pattern = rf'^llm_api_schema_retries_total\{{feature="{feature}"\}} (\S+)$'
    match = re.search(pattern, text, flags=re.MULTILINE)
    return float(match[1]) if match else 0.0


async def test_a_retry_after_invalid_output_is_counted_for_its_feature(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    # The counter lives in this process's registry: compare before and after.
    before = {f: await schema_retries(client, f) for f in ("tasks", "summary", "title")}
    fake_engine.state.replies = replies("{not json", {"tasks": [task("Dan", "Call")]})
    response = await client.post("/api/tasks/extract", json={"email_content": "Dan, call me."})
    assert response.status_code == 200
    assert await schema_retries(client, "tasks") == before["tasks"] + 1
    assert await schema_retries(client, "summary") == before["summary"]
    assert await schema_retries(client, "title") == before["title"]


@pytest.mark.parametrize(
    ("path", "body", "feature"),
    [
        ("/api/tasks/extract", {"email_content": "Dan, call me."}, "tasks"),
        ("/api/summarization/summarize", {"email_content": "Dan, call me."}, "summary"),
        ("/api/title/generate", {"user_message": "Dan, call me."}, "title"),
    ],
)
async def test_a_502_after_the_retry_counts_one_retry(
    client: httpx.AsyncClient, fake_engine: FakeEngine, path: str, body: object, feature: str
) -> None:
    before = await schema_retries(client, feature)
    fake_engine.state.replies = replies("garbage")
    response = await client.post(path, json=body)
    assert response.status_code == 502
    assert len(fake_engine.state.requests) == 2
    assert await schema_retries(client, feature) == before + 1


async def test_a_retry_after_a_cut_answer_is_counted(
    client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    before = await schema_retries(client, "title")
    fake_engine.state.finish_reason = "length"
    fake_engine.state.replies = replies({"title": "Call"})
    response = await client.post("/api/title/generate", json={"user_message": "Dan, call me."})
    assert response.status_code == 502
    assert len(fake_engine.state.requests) == 2
    assert await schema_retries(client, "title") == before + 1


# --- answer bounds --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "max_tasks", "evidence_chars"),
    [(samples.PASTED_ENGLISH, 3, 88), (samples.PASTED_HEBREW, 2, 45)],
)
async def test_extraction_bounds_follow_the_email_and_max_tokens_holds_them(
    client: httpx.AsyncClient,
    fake_engine: FakeEngine,
    content: str,
    max_tasks: int,
    evidence_chars: int,
) -> None:
    fake_engine.state.replies = replies({"tasks": []})
    response = await client.post("/api/tasks/extract", json={"email_content": content})
    assert response.status_code == 200
    (request,) = fake_engine.state.requests
    schema = request["response_format"]["json_schema"]["schema"]
    tasks = schema["properties"]["tasks"]
    assert tasks["maxItems"] == max_tasks
    assert tasks["items"]["properties"]["evidence"]["anyOf"][0]["maxLength"] == evidence_chars
    assert request["max_tokens"] == answer_tokens(schema)
    assert request["max_tokens"] > answer_chars(schema)


@pytest.mark.parametrize(
    ("path", "body", "answer"),
    [
        (
            "/api/summarization/summarize",
            {"email_content": "Dan, call me.", "length": 80},
            {"title": "Call", "summary": "Dan should call."},
        ),
        ("/api/title/generate", {"user_message": "Dan, call me."}, {"title": "Call"}),
    ],
)
async def test_summary_and_title_max_tokens_hold_the_longest_answer(
    client: httpx.AsyncClient, fake_engine: FakeEngine, path: str, body: object, answer: object
) -> None:
    fake_engine.state.replies = replies(answer)
    assert (await client.post(path, json=body)).status_code == 200
    (request,) = fake_engine.state.requests
    schema = request["response_format"]["json_schema"]["schema"]
    assert request["max_tokens"] == answer_tokens(schema) > answer_chars(schema)
