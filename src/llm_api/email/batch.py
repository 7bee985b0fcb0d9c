"""``llm-api emails extract|summarize PATH… --out FILE``: many emails, one output, none lost.

Inputs: ``.eml`` files, directories of them (searched recursively for ``.eml``, ``.mbox``
and ``.json``), mbox files, and JSON files holding a list of ``{"id", "email_content"}``.
Each email gets exactly one output record — its tasks, its summary or its error — so the
count of records out equals the count of emails in. A run can be resumed: ids already in
the output are skipped.

The emails go through the same :class:`EmailService` as the HTTP API, in process, with an
:class:`EngineClient` pointed at the engine the settings name (``LLM_API_ENGINE_URL``, else
``LLM_API_BASE_URL``, else the engine ``llm-api serve`` starts on ``LLM_API_VLLM_PORT``).
"""

from __future__ import annotations

import asyncio
import csv
import logging
import mailbox
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from icalendar import Calendar, Todo
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from llm_api.chat.schemas import Language
from llm_api.email.schemas import MAX_SUMMARY_LENGTH, MIN_SUMMARY_LENGTH
from llm_api.email.service import EmailLimits, EmailService
from llm_api.engine.client import EngineClient, EngineLimits
from llm_api.engine.models import ModelCatalog
from llm_api.errors import ApiError
from llm_api.settings import Settings

log = logging.getLogger(__name__)
Record = dict[str, Any]


class Operation(StrEnum):
    EXTRACT = "extract"
    SUMMARIZE = "summarize"


class OutputFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    ICS = "ics"


@dataclass(frozen=True, slots=True)
class EmailInput:
    id: str
    content: str | bytes | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BatchOptions:
    operation: Operation
    out: Path
    output_format: OutputFormat = OutputFormat.JSONL
    concurrency: int = 4
    length: int = 100
    language: Language = Language.AUTO
    progress: bool = True


@dataclass(slots=True)
class BatchReport:
    total: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0


# --- inputs -----------------------------------------------------------------------------
_SEARCHED = {".eml", ".mbox", ".json"}


def collect_inputs(paths: Sequence[Path]) -> list[EmailInput]:
    """Every email under ``paths``, in a stable order; unreadable ones as error entries."""
    found: list[EmailInput] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if file.suffix.lower() in _SEARCHED:
                    found.extend(_file_inputs(file))
        else:
            found.extend(_file_inputs(path))
    return found


def _file_inputs(path: Path) -> Iterator[EmailInput]:
    try:
        suffix = path.suffix.lower()
        if suffix == ".json":
            yield from _json_inputs(path)
        elif suffix == ".mbox" or _starts_like_mbox(path):
            yield from _mbox_inputs(path)
        else:
            yield EmailInput(str(path), path.read_bytes())
    except OSError as exc:
        yield EmailInput(str(path), None, f"cannot read the file: {exc.strerror or 'I/O error'}")


def _starts_like_mbox(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(5) == b"From "


def _mbox_inputs(path: Path) -> Iterator[EmailInput]:
    box = mailbox.mbox(path, create=False)
    try:
        for index, key in enumerate(box.keys()):
            yield EmailInput(f"{path}#{index}", box.get_bytes(key))
    finally:
        box.close()


def _json_inputs(path: Path) -> Iterator[EmailInput]:
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        yield EmailInput(str(path), None, "the file is not valid JSON")
        return
    if not isinstance(data, list):
        yield EmailInput(str(path), None, 'the file must hold a list of {"id", "email_content"}')
        return
    for index, item in enumerate(data):
        fallback = f"{path}#{index}"
        if not isinstance(item, dict):
            yield EmailInput(fallback, None, 'the item is not an {"id", "email_content"} object')
            continue
        raw_id = item.get("id")
        email_id = str(raw_id) if raw_id is not None and str(raw_id) else fallback
        content = item.get("email_content")
        if not isinstance(content, str):
            yield EmailInput(email_id, None, "the item has no email_content string")
        else:
            yield EmailInput(email_id, content)


# --- outputs ----------------------------------------------------------------------------
class Writer(Protocol):
    def done_ids(self) -> set[str]: ...
    def write(self, record: Record) -> None: ...
    def close(self) -> None: ...


def _complete_lines(path: Path) -> None:
    """Drop a last line cut short by a crash, so that appending starts on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class JsonlWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        _complete_lines(path)
        self._file: IO[bytes] = path.open("ab")

    def done_ids(self) -> set[str]:
        ids = set()
        for line in self.path.read_bytes().splitlines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and "id" in record:
                ids.add(str(record["id"]))
        return ids

    def write(self, record: Record) -> None:
        self._file.write(orjson.dumps(record) + b"\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


_CSV_COLUMNS = {
    Operation.EXTRACT: ["id", "status", "error", "task_count", "tasks"],
    Operation.SUMMARIZE: ["id", "status", "error", "sender", "sending_date", "title", "summary"],
}


class CsvWriter:
    """One row per email (tasks as a JSON column), so rows out equal emails in."""

    def __init__(self, path: Path, operation: Operation) -> None:
        self.path = path
        self.operation = operation
        _complete_lines(path)
        fresh = not path.exists() or path.stat().st_size == 0
        self._file = path.open("a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, fieldnames=_CSV_COLUMNS[operation])
        if fresh:
            self._csv.writeheader()
            self._file.flush()

    def done_ids(self) -> set[str]:
        with self.path.open(newline="", encoding="utf-8") as file:
            return {row["id"] for row in csv.DictReader(file) if row.get("id")}

    def write(self, record: Record) -> None:
        row: dict[str, Any] = {"id": record["id"]}
        if "error" in record:
            row |= {"status": "error", "error": record["error"]["message"]}
        elif self.operation is Operation.EXTRACT:
            tasks = record["tasks"]
            row |= {"status": "ok", "task_count": len(tasks), "tasks": orjson.dumps(tasks).decode()}
        else:
            row |= {"status": "ok", **record["summary"]}
        self._csv.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class IcsWriter:
    """Records go to a JSONL journal beside the file (``FILE.jsonl``: resume and errors);
    the calendar, one VTODO per task, is rebuilt from the journal on close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = JsonlWriter(path.with_name(path.name + ".jsonl"))

    def done_ids(self) -> set[str]:
        return self.journal.done_ids()

    def write(self, record: Record) -> None:
        self.journal.write(record)

    def close(self) -> None:
        self.journal.close()
        calendar = Calendar()
        calendar.add("prodid", "-//PLG-AI LLM API//email tasks//EN")
        calendar.add("version", "2.0")
        for line in self.journal.path.read_bytes().splitlines():
            record = orjson.loads(line)
            for index, task in enumerate(record.get("tasks") or []):
                calendar.add_component(_todo(str(record["id"]), index, task))
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_bytes(calendar.to_ical())
        temporary.replace(self.path)


def _todo(email_id: str, index: int, task: Record) -> Todo:
    todo = Todo()
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", email_id)
    todo.add("uid", f"{safe_id}-{index}@llm-api")
    todo.add("summary", task["title"])
    details = [task["description"], f"Assigned to: {task['assigned_to']}"]
    if task.get("sender"):
        details.append(f"From: {task['sender']}")
    if task.get("evidence"):
        details.append(f"Quote: {task['evidence']}")
    todo.add("description", "\n".join(details))
    if task.get("due_date"):
        todo.add("due", date.fromisoformat(task["due_date"]))
    if task.get("sending_date"):
        todo.add("dtstart", date.fromisoformat(task["sending_date"]))
    todo.add("status", "NEEDS-ACTION")
    return todo


def open_writer(options: BatchOptions) -> Writer:
    if options.output_format is OutputFormat.CSV:
        return CsvWriter(options.out, options.operation)
    if options.output_format is OutputFormat.ICS:
        return IcsWriter(options.out)
    return JsonlWriter(options.out)


# --- the run ----------------------------------------------------------------------------
class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text(f"{speed:.2f} emails/s" if speed else "- emails/s", style="progress.data.speed")


async def _process(service: EmailService, item: EmailInput, options: BatchOptions) -> Record:
    if item.content is None:
        return {"id": item.id, "error": {"type": "unreadable_input", "message": item.error}}
    try:
        if options.operation is Operation.EXTRACT:
            tasks = await service.extract_tasks(item.content, options.language)
            return {"id": item.id, "tasks": [t.model_dump() for t in tasks]}
        summary = await service.summarize(item.content, options.length, options.language)
        return {"id": item.id, "summary": summary.model_dump()}
    except ApiError as exc:
        return {"id": item.id, "error": {"type": exc.type, "message": exc.message}}
    except Exception as exc:  # one email's bug must not stop the run; it is recorded
        log.exception("email %s failed unexpectedly", item.id)
        return {"id": item.id, "error": {"type": "internal_error", "message": type(exc).__name__}}


async def run_batch(
    service: EmailService, inputs: Sequence[EmailInput], options: BatchOptions
) -> BatchReport:
    writer = open_writer(options)
    report = BatchReport(total=len(inputs))
    try:
        done = writer.done_ids()
        pending = [item for item in inputs if item.id not in done]
        report.skipped = len(inputs) - len(pending)
        queue: asyncio.Queue[EmailInput] = asyncio.Queue()
        for item in pending:
            queue.put_nowait(item)
        progress = Progress(
            TextColumn(f"emails {options.operation.value}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not options.progress,
        )

        async def worker(bar: Any) -> None:
            while not queue.empty():
                item = queue.get_nowait()
                record = await _process(service, item, options)
                writer.write(record)
                if "error" in record:
                    report.failed += 1
                else:
                    report.succeeded += 1
                progress.advance(bar)

        with progress:
            bar = progress.add_task("emails", total=len(pending))
            workers = max(1, min(options.concurrency, len(pending)))
            await asyncio.gather(*(worker(bar) for _ in range(workers)))
    finally:
        writer.close()
    return report


async def run_batch_with_engine(
    settings: Settings, paths: Sequence[Path], options: BatchOptions
) -> BatchReport:
    limits = EngineLimits(
        base_url=settings.engine_base_url,
        request_timeout=settings.request_timeout,
        health_timeout=settings.health_check_timeout,
        pool_size=max(settings.connection_pool_size, options.concurrency),
        keepalive_expiry=settings.keepalive_expiry,
        background_priority=settings.background_priority,
        # --concurrency is the batch's own slot cap; LLM_API_BACKGROUND_SLOTS, when set, caps it.
        background_slots=settings.background_slots,
    )
    inputs = collect_inputs(paths)
    async with EngineClient(limits) as engine:
        service = EmailService(
            engine,
            ModelCatalog(engine, settings.model_name),
            EmailLimits.from_settings(settings, background=True),
        )
        return await run_batch(service, inputs, options)


# --- command line -----------------------------------------------------------------------
def add_emails_parser(commands: Any) -> None:
    """``llm-api emails extract|summarize``; ``commands`` is the top-level subparsers."""
    emails = commands.add_parser("emails", help="extract tasks from / summarize many emails")
    actions = emails.add_subparsers(dest="emails_command", required=True)
    for operation, help_text in (
        (Operation.EXTRACT, "extract tasks (JSONL, CSV or ICS)"),
        (Operation.SUMMARIZE, "summarize (JSONL or CSV)"),
    ):
        sub = actions.add_parser(operation.value, help=help_text)
        sub.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                         help=".eml files, directories, mbox files, JSON lists")  # fmt: skip
        sub.add_argument("--out", required=True, type=Path, metavar="FILE")
        formats = list(OutputFormat) if operation is Operation.EXTRACT else [
            OutputFormat.JSONL, OutputFormat.CSV]  # fmt: skip
        sub.add_argument("--format", dest="output_format", default=OutputFormat.JSONL.value,
                         choices=[f.value for f in formats])  # fmt: skip
        sub.add_argument("--concurrency", type=_positive, default=4, metavar="N")
        sub.add_argument("--language", default=Language.AUTO.value,
                         choices=[lang.value for lang in Language])  # fmt: skip
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        if operation is Operation.SUMMARIZE:
            sub.add_argument("--length", type=int, default=100, help="summary characters, 20-2000")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def run_emails_command(args: Any, settings: Settings) -> int:
    """Run the batch; exit 0 when every email succeeded, 1 when some failed (see output)."""
    operation = Operation(args.emails_command)
    length = getattr(args, "length", 100)
    if not MIN_SUMMARY_LENGTH <= length <= MAX_SUMMARY_LENGTH:
        print(
            f"error: --length must be between {MIN_SUMMARY_LENGTH} and {MAX_SUMMARY_LENGTH}",
            file=sys.stderr,
        )
        return 2
    options = BatchOptions(
        operation=operation,
        out=args.out,
        output_format=OutputFormat(args.output_format),
        concurrency=args.concurrency,
        length=length,
        language=Language(args.language),
        progress=not args.no_progress,
    )
    report = asyncio.run(run_batch_with_engine(settings, args.paths, options))
    print(
        f"{report.total} emails: {report.succeeded} done, {report.failed} failed, "
        f"{report.skipped} already in {args.out}",
        file=sys.stderr,
    )
    return 1 if report.failed else 0
