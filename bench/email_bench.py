"""Email endpoints on the real embedded engine: time per email, schema on vs off, batch rate.

    .venv/bin/python -m bench.email_bench [--emails 20] [--engine-url URL] [--out FILE]

Without ``--engine-url`` it starts its own llama-server with the bundled Gemma 3 270M (the
supervisor's command line, 4 slots, 2 threads) and stops it at the end. It measures, over
the same generated Hebrew and English emails:

- extract and summarize, one email at a time: p50 / p90 seconds per email and how many
  answers were valid, with ``response_format`` (grammar) on and off;
- batch extraction throughput (emails per second) through the batch runner at concurrency
  1 and 4.

Results print as a Markdown table (and JSON with ``--out``). Keep ``--emails`` small on a
busy machine: every email is a full generation on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from llm_api.chat.schemas import Language
from llm_api.email.batch import BatchOptions, EmailInput, Operation, run_batch
from llm_api.email.prompts import SUMMARY_SYSTEM
from llm_api.email.schemas import ModelSummary, json_schema
from llm_api.email.service import EmailLimits, EmailService
from llm_api.engine.client import EngineClient, EngineLimits, JsonObject
from llm_api.engine.launch import llama_server_command
from llm_api.engine.models import ModelCatalog
from llm_api.errors import ApiError
from llm_api.settings import Settings

REPO = Path(__file__).resolve().parents[1]
MAX_TOKENS = 768  # the API's own first budget for an extraction
PEOPLE_HE = ["דנה", "יוסי", "רונית", "אבי", "נועה", "עמית", "שירה", "משה", "ליאור", "מיכל"]
PEOPLE_EN = ["Dana", "Mike", "Sarah", "Ron", "Lisa", "Tom", "Anna", "David", "Noah", "Emma"]
WORK_HE = ["להכין את מצגת הרבעון", "לשלוח ללקוח את הצעת המחיר", "לעדכן את תוכנית העבודה",
           "לבדוק את דוח ההוצאות", "לתאם פגישה עם הספק"]  # fmt: skip
WORK_EN = ["prepare the quarterly deck", "send the client the updated quote",
           "update the project plan", "review the expense report",
           "book a call with the vendor"]  # fmt: skip
WHEN_HE = ["עד מחר", "עד יום חמישי הבא", "עד סוף השבוע", "עד 25.1.2024", "בהקדם"]
WHEN_EN = ["by tomorrow", "by next Monday", "by end of week", "by 25.1.2024", "soon"]


def make_emails(count: int) -> list[str]:
    emails = []
    for i in range(count):
        a, b = i % 10, (i + 3) % 10
        if i % 2 == 0:
            emails.append(
                f"מאת: {PEOPLE_HE[a]} <user{a}@example.co.il>\nנשלח: 2024-01-{21 + i % 5} 09:30\n"
                f"נושא: משימות לשבוע {i}\n\nשלום לכולם,\n"
                f"{PEOPLE_HE[b]}, בבקשה {WORK_HE[i % 5]} {WHEN_HE[i % 5]}.\n"
                f"כולם מתבקשים לעבור על המסמך המצורף.\n\nבברכה,\n{PEOPLE_HE[a]}\n"
            )
        else:
            emails.append(
                f"From: {PEOPLE_EN[a]} <user{a}@example.com>\n"
                "Date: Mon, 22 Jan 2024 10:00:00 +0200\n"
                f"Subject: Tasks for week {i}\n\nHi all,\n"
                f"{PEOPLE_EN[b]}, please {WORK_EN[i % 5]} {WHEN_EN[i % 5]}.\n"
                f"Everyone should read the attached notes.\n\nThanks,\n{PEOPLE_EN[a]}\n"
            )
    return emails


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def own_engine(port: int) -> Iterator[str]:
    settings = Settings(
        vllm_port=port, data_dir=REPO / "data", max_model_len=4096, max_tokens_cap=1024,
        engine_parallel=4, engine_threads=2,
    )  # fmt: skip
    log = Path(tempfile.gettempdir()) / "email-bench-llama-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            llama_server_command(settings, "gemma-3-270m"), stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"llama-server did not start; see {log}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(10)


class CountingEngine(EngineClient):
    """Records, per engine call, the generated tokens and the seconds it took."""

    calls: list[tuple[int, float]]

    async def complete_chat(self, payload: Mapping[str, Any]) -> JsonObject:
        started = time.perf_counter()
        answer = await super().complete_chat(payload)
        tokens = int((answer.get("usage") or {}).get("completion_tokens") or 0)
        self.calls.append((tokens, time.perf_counter() - started))
        return answer


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url.rstrip("/")


def _summary(
    seconds: list[float], valid: int, total: int, calls: list[tuple[int, float]]
) -> dict[str, Any]:
    ordered = sorted(seconds)
    tokens = sum(t for t, _ in calls)
    return {
        "p50_s": round(statistics.median(ordered), 2),
        "p90_s": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], 2),
        "mean_s": round(statistics.fmean(ordered), 2),
        "valid": f"{valid}/{total}",
        "engine_calls": len(calls),
        "tokens_per_email": round(tokens / total, 1),
        "ms_per_token": round(1000 * sum(s for _, s in calls) / tokens, 1) if tokens else None,
    }


async def time_each(
    service: EmailService, engine: CountingEngine, operation: Operation, emails: list[str]
) -> dict[str, Any]:
    engine.calls = []
    seconds, valid = [], 0
    for content in emails:
        started = time.perf_counter()
        try:
            if operation is Operation.EXTRACT:
                await service.extract_tasks(content)
            else:
                await service.summarize(content, 100)
            valid += 1
        except ApiError:
            pass  # counted as not valid; its time still counts
        seconds.append(time.perf_counter() - started)
    return _summary(seconds, valid, len(emails), engine.calls)


async def batch_rate(
    service: EmailService,
    emails: list[str],
    concurrency: int,
    operation: Operation = Operation.EXTRACT,
) -> dict[str, Any]:
    inputs = [EmailInput(f"e{i}", content) for i, content in enumerate(emails)]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.jsonl"
        options = BatchOptions(operation, out, concurrency=concurrency, progress=False)
        started = time.perf_counter()
        report = await run_batch(service, inputs, options)
        elapsed = time.perf_counter() - started
        lines = len(out.read_bytes().splitlines())
    return {
        "operation": operation.value,
        "concurrency": concurrency,
        "emails": len(emails),
        "seconds": round(elapsed, 1),
        "emails_per_s": round(len(emails) / elapsed, 3),
        "lines_out": lines,
        "failed": report.failed,
    }


def bench_limits(*, constrained: bool) -> EmailLimits:
    # One cap for every mode (no "more room" retry), so that an unconstrained answer that
    # rambles costs the same number of tokens at most as a constrained one.
    return EmailLimits(
        max_tokens_cap=MAX_TOKENS, extract_max_tokens=MAX_TOKENS, context_tokens=4096,
        constrained=constrained,
    )  # fmt: skip


async def measure(url: str, count: int) -> dict[str, Any]:
    emails = make_emails(count)
    results: dict[str, Any] = {"emails": count}
    limits = EngineLimits(base_url=url, request_timeout=900)
    async with CountingEngine(limits) as engine:
        engine.calls = []
        models = ModelCatalog(engine, None)
        for constrained in (True, False):
            service = EmailService(engine, models, bench_limits(constrained=constrained))
            label = "schema on" if constrained else "schema off"
            for operation in (Operation.EXTRACT, Operation.SUMMARIZE):
                key = f"{operation.value} ({label})"
                results[key] = await time_each(service, engine, operation, emails)
                print(key, results[key], flush=True)
        service = EmailService(
            engine, models, EmailLimits(max_tokens_cap=1024, context_tokens=4096)
        )
        results["batch"] = [await batch_rate(service, emails, c) for c in (1, 4)]
        print("batch", results["batch"], flush=True)
    return results


async def grammar_cost(url: str, rounds: int, max_tokens: int) -> dict[str, Any]:
    """The same summary request with and without the JSON schema, interleaved so that any
    other load on the machine hits both alike; per-token times from the engine's own
    ``timings`` (llama-server) when present, else wall time."""
    email = make_emails(1)[0]
    schema = json_schema(ModelSummary, summary=200)
    base = {
        "messages": [{"role": "system", "content": SUMMARY_SYSTEM[Language.HEBREW]},
                     {"role": "user", "content": email}],
        "max_tokens": max_tokens, "temperature": 0.0,
    }  # fmt: skip
    per_token: dict[str, list[float]] = {"schema on": [], "schema off": []}
    async with EngineClient(EngineLimits(base_url=url, request_timeout=900)) as engine:
        for _ in range(rounds):
            for label, seen in per_token.items():
                payload = dict(base)
                if label == "schema on":
                    payload["response_format"] = {
                        "type": "json_schema",
                        "json_schema": {"name": "summary", "strict": True, "schema": schema},
                    }
                started = time.perf_counter()
                answer = await engine.complete_chat(payload)
                elapsed = time.perf_counter() - started
                timings = answer.get("timings") or {}
                tokens = int((answer.get("usage") or {}).get("completion_tokens") or 1)
                seen.append(float(timings.get("predicted_per_token_ms") or 1000 * elapsed / tokens))
                print(label, round(seen[-1], 1), "ms/token", flush=True)
    return {label: round(statistics.median(v), 1) for label, v in per_token.items()}


async def batch_only(url: str, count: int, operation: Operation) -> list[dict[str, Any]]:
    async with EngineClient(EngineLimits(base_url=url, request_timeout=900)) as engine:
        service = EmailService(engine, ModelCatalog(engine, None), bench_limits(constrained=True))
        rows = []
        for concurrency in (1, 4):
            rows.append(await batch_rate(service, make_emails(count), concurrency, operation))
            print(rows[-1], flush=True)
        return rows


def markdown(results: dict[str, Any]) -> str:
    lines = ["| measurement | p50 s | p90 s | mean s | valid | engine calls | tokens/email "
             "| ms/token |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, value in results.items():
        if isinstance(value, dict):
            lines.append(f"| {key} | {value['p50_s']} | {value['p90_s']} | {value['mean_s']} "
                         f"| {value['valid']} | {value['engine_calls']} "
                         f"| {value['tokens_per_email']} | {value['ms_per_token']} |")  # fmt: skip
    lines += ["", "| batch concurrency | emails | seconds | emails/s | lines out | failed |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for row in results["batch"]:
        lines.append(f"| {row['concurrency']} | {row['emails']} | {row['seconds']} | "
                     f"{row['emails_per_s']} | {row['lines_out']} | {row['failed']} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=20)
    parser.add_argument("--engine-url", default=None)
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--grammar-cost", type=int, default=0, metavar="ROUNDS",
        help="only measure ms per generated token with and without the schema, ROUNDS times",
    )  # fmt: skip
    parser.add_argument(
        "--batch-only", choices=[o.value for o in Operation], default=None,
        help="only measure batch throughput (concurrency 1 and 4) for this operation",
    )  # fmt: skip
    args = parser.parse_args()
    if args.batch_only:
        with own_engine(args.port) if not args.engine_url else _given(args.engine_url) as url:
            rows = asyncio.run(batch_only(url, args.emails, Operation(args.batch_only)))
        print(markdown({"batch": rows}))
        return
    if args.grammar_cost:
        with own_engine(args.port) if not args.engine_url else _given(args.engine_url) as url:
            print(asyncio.run(grammar_cost(url, args.grammar_cost, 48)))
        return
    if args.engine_url:
        results = asyncio.run(measure(args.engine_url.rstrip("/"), args.emails))
    else:
        with own_engine(args.port) as url:
            results = asyncio.run(measure(url, args.emails))
    print(markdown(results))
    if args.out:
        args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
