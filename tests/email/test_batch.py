"""``llm-api emails …`` against the fake engine: every input kind, every output format,
resume, per-email errors, concurrency, and the command line itself."""

from __future__ import annotations

import asyncio
import csv
import mailbox
import os
import sys
from collections import deque
from pathlib import Path

import orjson
import pytest
from icalendar import Calendar

from llm_api.email.batch import (
    BatchOptions,
    Operation,
    OutputFormat,
    collect_inputs,
    run_batch_with_engine,
)
from tests.conftest import gateway_settings
from tests.email import samples
from tests.fakes import FakeEngine

TASKS = {"tasks": [{"assigned_to": "דנה", "title": "הכנת דוח", "description": "להכין את הדוח.",
                    "due_date": "מחר", "evidence": None}]}  # fmt: skip
SUMMARY = {"title": "דוח חודשי", "summary": "עמית מבקש מדנה להכין את הדוח החודשי."}


def make_inputs(root: Path) -> list[Path]:
    """7 emails: 2 .eml in a directory, 2 in an mbox, 3 in a JSON list (one broken), plus a
    missing file (1 more entry, an error) = 8 entries."""
    folder = root / "inbox"
    (folder / "nested").mkdir(parents=True, exist_ok=True)
    (folder / "a.eml").write_bytes(samples.hebrew_mime())
    (folder / "nested" / "b.eml").write_text(samples.PASTED_ENGLISH, encoding="utf-8")
    (folder / "notes.txt").write_text("not an email", encoding="utf-8")  # ignored in dirs
    (root / "archive.mbox").unlink(missing_ok=True)
    box = mailbox.mbox(root / "archive.mbox")
    box.add(samples.hebrew_mime())
    box.add(samples.FORWARDED.encode())
    box.close()
    (root / "list.json").write_bytes(
        orjson.dumps(
            [
                {"id": "he-1", "email_content": samples.PASTED_HEBREW},
                {"id": 2, "email_content": "Ron, send the invoice by Monday."},
                {"id": "broken", "body": "no email_content here"},
            ]
        )
    )
    return [folder, root / "archive.mbox", root / "list.json", root / "missing.eml"]


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def options(out: Path, operation: Operation = Operation.EXTRACT, **kw: object) -> BatchOptions:
    return BatchOptions(operation=operation, out=out, progress=False, **kw)  # type: ignore[arg-type]


def test_collects_every_input_kind(tmp_path: Path) -> None:
    inputs = collect_inputs(make_inputs(tmp_path))
    ids = [item.id for item in inputs]
    assert ids == [
        f"{tmp_path}/inbox/a.eml",
        f"{tmp_path}/inbox/nested/b.eml",
        f"{tmp_path}/archive.mbox#0",
        f"{tmp_path}/archive.mbox#1",
        "he-1",
        "2",
        "broken",
        f"{tmp_path}/missing.eml",
    ]
    errors = {item.id: item.error for item in inputs if item.content is None}
    assert set(errors) == {"broken", f"{tmp_path}/missing.eml"}
    assert "cannot read" in str(errors[f"{tmp_path}/missing.eml"])


async def test_extract_jsonl_one_line_per_email_and_errors_recorded(
    tmp_path: Path, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = deque([orjson.dumps(TASKS).decode()])
    out = tmp_path / "tasks.jsonl"
    settings = gateway_settings(fake_engine.url)
    report = await run_batch_with_engine(settings, make_inputs(tmp_path), options(out))
    records = read_jsonl(out)
    assert len(records) == 8
    assert (report.total, report.succeeded, report.failed, report.skipped) == (8, 6, 2, 0)
    by_id = {str(r["id"]): r for r in records}
    first = by_id[f"{tmp_path}/inbox/a.eml"]["tasks"]
    assert first == [
        {
            "sender": "עמית לוי <amit@example.co.il>",
            "sending_date": "2024-01-21",
            "assigned_to": "דנה",
            "title": "הכנת דוח",
            "description": "להכין את הדוח.",
            "due_date": "2024-01-22",
            "evidence": None,
        }
    ]
    assert by_id["broken"]["error"] == {
        "type": "unreadable_input",
        "message": "the item has no email_content string",
    }
    assert by_id[f"{tmp_path}/missing.eml"]["error"]["type"] == "unreadable_input"  # type: ignore[index]
    assert len(fake_engine.state.requests) == 6


async def test_model_garbage_is_recorded_per_email_and_the_run_goes_on(
    tmp_path: Path, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = deque(["no JSON here"])
    out = tmp_path / "tasks.jsonl"
    report = await run_batch_with_engine(
        gateway_settings(fake_engine.url), make_inputs(tmp_path), options(out)
    )
    records = read_jsonl(out)
    assert len(records) == 8
    assert report.failed == 8
    kinds = [r["error"]["type"] for r in records]  # type: ignore[index]
    assert kinds.count("model_output_invalid") == 6
    assert kinds.count("unreadable_input") == 2


async def test_resume_skips_done_ids_and_repairs_a_cut_line(
    tmp_path: Path, fake_engine: FakeEngine
) -> None:
    fake_engine.state.replies = deque([orjson.dumps(TASKS).decode()])
    out = tmp_path / "tasks.jsonl"
    done = orjson.dumps({"id": "he-1", "tasks": []}) + b"\n"
    out.write_bytes(done + b'{"id": "2", "tas')  # a crash cut the last line
    report = await run_batch_with_engine(
        gateway_settings(fake_engine.url), make_inputs(tmp_path), options(out)
    )
    records = read_jsonl(out)
    assert len(records) == 8
    assert sorted(str(r["id"]) for r in records) == sorted(
        item.id for item in collect_inputs(make_inputs(tmp_path))
    )
    assert report.skipped == 1
    assert len(fake_engine.state.requests) == 5
    # A second run finds everything done and asks the engine nothing.
    again = await run_batch_with_engine(
        gateway_settings(fake_engine.url), make_inputs(tmp_path), options(out)
    )
    assert again.skipped == 8
    assert len(read_jsonl(out)) == 8
    assert len(fake_engine.state.requests) == 5


async def test_concurrency_runs_emails_in_parallel(tmp_path: Path, fake_engine: FakeEngine) -> None:
    fake_engine.state.replies = deque([orjson.dumps(TASKS).decode()])
    fake_engine.state.reply_delay = 0.2
    emails = [{"id": f"e{i}", "email_content": f"דנה, משימה {i}"} for i in range(8)]
    source = tmp_path / "many.json"
    source.write_bytes(orjson.dumps(emails))
    out = tmp_path / "out.jsonl"
    await run_batch_with_engine(
        gateway_settings(fake_engine.url), [source], options(out, concurrency=4)
    )
    assert fake_engine.state.peak_replies == 4
    assert len(read_jsonl(out)) == 8


async def test_extract_csv_one_row_per_email(tmp_path: Path, fake_engine: FakeEngine) -> None:
    fake_engine.state.replies = deque([orjson.dumps(TASKS).decode()])
    out = tmp_path / "tasks.csv"
    await run_batch_with_engine(
        gateway_settings(fake_engine.url),
        make_inputs(tmp_path),
        options(out, output_format=OutputFormat.CSV),
    )
    with out.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 8
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 6
    assert orjson.loads(ok[0]["tasks"])[0]["assigned_to"] == "דנה"
    assert ok[0]["task_count"] == "1"


async def test_summarize_csv(tmp_path: Path, fake_engine: FakeEngine) -> None:
    fake_engine.state.replies = deque([orjson.dumps(SUMMARY).decode()])
    out = tmp_path / "summaries.csv"
    await run_batch_with_engine(
        gateway_settings(fake_engine.url),
        make_inputs(tmp_path),
        options(out, Operation.SUMMARIZE, output_format=OutputFormat.CSV, length=40),
    )
    with out.open(newline="", encoding="utf-8") as file:
        rows = {r["id"]: r for r in csv.DictReader(file)}
    assert len(rows) == 8
    row = rows["he-1"]
    assert row["sender"] == "amit@x.co.il"
    assert row["sending_date"] == "2024-01-20"
    assert row["title"] == "דוח חודשי"
    assert len(row["summary"]) <= 40
    assert rows["broken"]["status"] == "error"


async def test_extract_ics_one_vtodo_per_task(tmp_path: Path, fake_engine: FakeEngine) -> None:
    fake_engine.state.replies = deque([orjson.dumps(TASKS).decode()])
    out = tmp_path / "tasks.ics"
    await run_batch_with_engine(
        gateway_settings(fake_engine.url),
        make_inputs(tmp_path),
        options(out, output_format=OutputFormat.ICS),
    )
    calendar = Calendar.from_ical(out.read_bytes())
    todos = list(calendar.walk("VTODO"))
    assert len(todos) == 6
    uids = {str(t["UID"]) for t in todos}
    assert len(uids) == 6
    first = next(
        t for t in todos if str(t["UID"]).startswith(f"{tmp_path}/inbox/a.eml".replace("/", "_"))
    )
    assert str(first["SUMMARY"]) == "הכנת דוח"
    assert "להכין את הדוח." in str(first["DESCRIPTION"])
    assert "דנה" in str(first["DESCRIPTION"])
    assert first.decoded("DUE").isoformat() == "2024-01-22"
    # The journal beside it keeps one line per email, errors included.
    assert len(read_jsonl(tmp_path / "tasks.ics.jsonl")) == 8


async def test_command_line_end_to_end(tmp_path: Path, fake_engine: FakeEngine) -> None:
    fake_engine.state.replies = deque([orjson.dumps(TASKS).decode()])
    out = tmp_path / "cli.jsonl"
    env = {**os.environ, "LLM_API_ENGINE_URL": fake_engine.url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_api.cli", "emails", "extract",
        *map(str, make_inputs(tmp_path)), "--out", str(out), "--concurrency", "2",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1  # two inputs were unreadable
    assert "8 emails: 6 done, 2 failed, 0 already in" in stderr.decode()
    assert len(read_jsonl(out)) == 8


@pytest.mark.parametrize("bad", [["--concurrency", "0"], ["--format", "ics"], ["--length", "5"]])
async def test_command_line_rejects_bad_options(tmp_path: Path, bad: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_api.cli", "emails", "summarize", str(tmp_path),
        "--out", str(tmp_path / "x.jsonl"), *bad,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert not (tmp_path / "x.jsonl").exists()
