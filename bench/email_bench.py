"""Email endpoints on the real embedded engine: time per email, schema on vs off, batch rate.

    .venv/bin/python -m bench.email_bench [--emails 20] [--batch-emails 12] [--out FILE]

Without ``--engine-url`` it starts its own llama-server with the bundled Gemma 3 270M (the
supervisor's command line: 4 slots, 2 threads, 4096 tokens a slot) and stops it at the end.
Over the same generated emails (Hebrew and English, alternating) it measures:

- extract and summarize (length 100), one email at a time, through ``EmailService`` with the
  gateway's limits as in the integration tests (context 4096, cap 2048): seconds per email
  (p50 / p90, retries included), tokens per email, valid answers;
- schema on vs off, like for like: right after each constrained call, the same request
  without ``response_format`` and with ``max_tokens`` set to the tokens the constrained
  answer took, so both generate the same number of tokens from the same prompt and the
  difference is the grammar's. (Unconstrained, the base model never writes the JSON: it
  repeats the prompt until ``max_tokens``; a real schema-off API call would cost the whole
  ``max_tokens``, see docs/email-benchmarks.md.) Per-token times are llama-server's own
  ``timings.predicted_per_token_ms``;
- batch extraction throughput through the command's own runner (``llm-api emails extract``
  on a JSON list) at concurrency 1 and 4.

The load average (``os.getloadavg``) is recorded before and after each part: on a shared
2-core machine it moves every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
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
from llm_api.email.batch import BatchOptions, Operation, run_batch_with_engine
from llm_api.email.prompts import SUMMARY_SYSTEM
from llm_api.email.schemas import ModelSummary, json_schema
from llm_api.email.service import EmailLimits, EmailService
from llm_api.engine.client import EngineClient, EngineLimits, JsonObject
from llm_api.engine.launch import llama_server_command
from llm_api.engine.models import ModelCatalog
from llm_api.errors import ApiError
from llm_api.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# The gateway's limits in the integration tests (tests/integration/test_email_engine.py).
CONTEXT_TOKENS, MAX_TOKENS_CAP = 4096, 2048
SUMMARY_LENGTH = 100
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


class PairedEngine(EngineClient):
    """Records every engine call; with ``twin`` on, follows each constrained call with the
    same request unconstrained, limited to the tokens the constrained answer took."""

    calls: list[dict[str, Any]]
    twins: list[dict[str, Any]]
    twin: bool = False

    async def complete_chat(
        self,
        payload: Mapping[str, Any],
        *,
        affinity: str | None = None,
        background: bool = False,
    ) -> JsonObject:
        answer, record = await self._timed(payload)
        self.calls.append(record)
        if self.twin and "response_format" in payload and record["tokens"]:
            twin = {k: v for k, v in payload.items() if k != "response_format"}
            twin["max_tokens"] = record["tokens"]
            self.twins.append((await self._timed(twin))[1])
        return answer

    async def _timed(self, payload: Mapping[str, Any]) -> tuple[JsonObject, dict[str, Any]]:
        started = time.perf_counter()
        answer = await super().complete_chat(payload)
        seconds = time.perf_counter() - started
        usage = answer.get("usage") or {}
        timings = answer.get("timings") or {}
        choices = answer.get("choices") or [{}]
        tokens = int(usage.get("completion_tokens") or 0)
        return answer, {
            "tokens": tokens,
            "seconds": seconds,
            "ms_per_token": timings.get("predicted_per_token_ms"),
            "prompt_ms": timings.get("prompt_ms"),
            "finish_reason": choices[0].get("finish_reason"),
        }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(len(ordered) * fraction) - 1)]


def _median(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


async def per_email(
    engine: PairedEngine, operation: Operation, emails: list[str]
) -> dict[str, Any]:
    """Each email through the service (schema on), each engine call followed by its
    unconstrained twin (schema off, same tokens)."""
    service = EmailService(engine, ModelCatalog(engine, None), bench_limits())
    seconds, twin_seconds, valid, tokens = [], [], 0, []
    all_on_ms: list[Any] = []
    all_off_ms: list[Any] = []
    engine.twin = True
    before = load()
    for content in emails:
        engine.calls, engine.twins = [], []
        started = time.perf_counter()
        try:
            if operation is Operation.EXTRACT:
                await service.extract_tasks(content)
            else:
                await service.summarize(content, SUMMARY_LENGTH)
            valid += 1
        except ApiError:
            pass  # counted as not valid; its time still counts
        # The service's own time, without the twins' time spent inside it.
        seconds.append(time.perf_counter() - started - sum(t["seconds"] for t in engine.twins))
        twin_seconds.append(sum(t["seconds"] for t in engine.twins))
        tokens.append(sum(c["tokens"] for c in engine.calls))
        on_ms = [c["ms_per_token"] for c in engine.calls]
        off_ms = [t["ms_per_token"] for t in engine.twins]
        print(f"{operation.value}: {seconds[-1]:.1f} s on / {twin_seconds[-1]:.1f} s off, "
              f"{tokens[-1]} tokens, {len(engine.calls)} call(s), ms/token "
              f"{_median(on_ms)} / {_median(off_ms)}, load {load()[0]}", flush=True)  # fmt: skip
        all_on_ms += on_ms
        all_off_ms += off_ms
    engine.twin = False
    return {
        "emails": len(emails),
        "valid": valid,
        "schema_on": {
            "p50_s": round(statistics.median(seconds), 2),
            "p90_s": round(_percentile(seconds, 0.9), 2),
            "mean_s": round(statistics.fmean(seconds), 2),
            "tokens_p50": statistics.median(tokens),
            "tokens_max": max(tokens),
            "ms_per_token_p50": _median(all_on_ms),
        },
        "schema_off_same_tokens": {
            "p50_s": round(statistics.median(twin_seconds), 2),
            "p90_s": round(_percentile(twin_seconds, 0.9), 2),
            "ms_per_token_p50": _median(all_off_ms),
        },
        "load_before": before,
        "load_after": load(),
        "seconds_each": [round(x, 2) for x in seconds],
        "seconds_off_each": [round(x, 2) for x in twin_seconds],
        "tokens_each": tokens,
    }


def bench_limits() -> EmailLimits:
    return EmailLimits(max_tokens_cap=MAX_TOKENS_CAP, context_tokens=CONTEXT_TOKENS)


async def batch_rate(url: str, emails: list[str], concurrency: int) -> dict[str, Any]:
    """``llm-api emails extract emails.json --out out.jsonl --concurrency N``, in process."""
    settings = Settings(
        engine_url=url, max_model_len=CONTEXT_TOKENS, max_tokens_cap=MAX_TOKENS_CAP,
        request_timeout=900,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "emails.json"
        items = [{"id": f"e{i}", "email_content": c} for i, c in enumerate(emails)]
        source.write_bytes(orjson.dumps(items))
        out = Path(folder) / "out.jsonl"
        options = BatchOptions(Operation.EXTRACT, out, concurrency=concurrency, progress=False)
        before = load()
        started = time.perf_counter()
        report = await run_batch_with_engine(settings, [source], options)
        elapsed = time.perf_counter() - started
        lines = len(out.read_bytes().splitlines())
    row = {
        "operation": Operation.EXTRACT.value,
        "concurrency": concurrency,
        "emails": len(emails),
        "seconds": round(elapsed, 1),
        "emails_per_s": round(len(emails) / elapsed, 3),
        "lines_out": lines,
        "failed": report.failed,
        "load_before": before,
        "load_after": load(),
    }
    print("batch", row, flush=True)
    return row


def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform()}


async def measure(url: str, count: int, batch_count: int) -> dict[str, Any]:
    emails = make_emails(count)
    results: dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "emails": count,
        "limits": {"context_tokens": CONTEXT_TOKENS, "max_tokens_cap": MAX_TOKENS_CAP,
                   "summary_length": SUMMARY_LENGTH},
    }  # fmt: skip
    async with PairedEngine(EngineLimits(base_url=url, request_timeout=900)) as engine:
        engine.calls, engine.twins = [], []
        for operation in (Operation.EXTRACT, Operation.SUMMARIZE):
            results[operation.value] = await per_email(engine, operation, emails)
    results["batch"] = [await batch_rate(url, make_emails(batch_count), c) for c in (1, 4)]
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return results


async def grammar_cost(url: str, rounds: int) -> dict[str, Any]:
    """The same summary request with and without the JSON schema, interleaved so that any
    other load on the machine hits both alike; per-token times from the engine's own
    ``timings`` (llama-server) when present, else wall time."""
    email = make_emails(1)[0]
    schema = json_schema(ModelSummary, summary=200)
    base = {
        "messages": [{"role": "system", "content": SUMMARY_SYSTEM[Language.HEBREW]},
                     {"role": "user", "content": email}],
        "max_tokens": 48, "temperature": 0.0,
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


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| per email | emails | valid | p50 s | p90 s | tokens p50 (max) | ms/token p50 "
        "| schema off, same tokens: p50 s | ms/token p50 | load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for operation in (Operation.EXTRACT, Operation.SUMMARIZE):
        if operation.value not in results:
            continue
        row = results[operation.value]
        on, off = row["schema_on"], row["schema_off_same_tokens"]
        lines.append(
            f"| {operation.value} | {row['emails']} | {row['valid']} | {on['p50_s']} "
            f"| {on['p90_s']} | {on['tokens_p50']} ({on['tokens_max']}) "
            f"| {on['ms_per_token_p50']} | {off['p50_s']} | {off['ms_per_token_p50']} "
            f"| {row['load_before'][0]} → {row['load_after'][0]} |"
        )
    lines += [
        "",
        "| batch concurrency | emails | seconds | emails/s | lines out | failed "
        "| load before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results.get("batch", []):
        lines.append(
            f"| {row['concurrency']} | {row['emails']} | {row['seconds']} "
            f"| {row['emails_per_s']} | {row['lines_out']} | {row['failed']} "
            f"| {row['load_before'][0]} → {row['load_after'][0]} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--emails", type=int, default=20)
    parser.add_argument("--batch-emails", type=int, default=12)
    parser.add_argument("--engine-url", default=None)
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--grammar-cost", type=int, default=0, metavar="ROUNDS",
        help="only measure ms per generated token with and without the schema, ROUNDS times",
    )  # fmt: skip
    parser.add_argument(
        "--batch-only", action="store_true",
        help="only measure batch extraction throughput (concurrency 1 and 4)",
    )  # fmt: skip
    args = parser.parse_args()
    with own_engine(args.port) if not args.engine_url else _given(args.engine_url) as url:
        if args.grammar_cost:
            print(asyncio.run(grammar_cost(url, args.grammar_cost)))
            return
        if args.batch_only:
            rows = [asyncio.run(batch_rate(url, make_emails(args.batch_emails), c)) for c in (1, 4)]
            results: dict[str, Any] = {"machine": machine(), "batch": rows}
        else:
            results = asyncio.run(measure(url, args.emails, args.batch_emails))
    print(markdown(results))
    if args.out:
        args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url.rstrip("/")


if __name__ == "__main__":
    main()
