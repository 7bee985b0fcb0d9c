"""Conversation store and prefix reuse, measured.

* ``store``: 10,000 sessions x 20 messages (plus 200 sessions of 50 messages) in SQLite and
  in PostgreSQL; p50/p99 of appending a turn to an existing session (user message +
  streaming placeholder in one commit, then the final reply in a second) and of loading a
  50-message history. The load average is recorded before and after.
* ``engine``: a 10-turn Hebrew conversation through the gateway (store and context budget
  included) on the embedded llama-server, once per engine flag set; time-to-first-token per
  turn and the engine's cached prompt tokens (from the usage the gateway logs).

Run:  .venv/bin/python -m bench.store_bench store [--sessions 10000] [--samples 500]
      .venv/bin/python -m bench.store_bench engine [--turns 10]
Results are printed and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from llm_api.chat.store import (
    COMPLETE,
    NewMessage,
    SessionStore,
    open_store,
    utcnow,
)
from llm_api.chat.tables import messages, sessions
from llm_api.db.engine import database_url

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
OWNER = "bench"
HEBREW_USER = "ספר לי בבקשה על ההיסטוריה של ירושלים ועל המקומות החשובים בה"
HEBREW_REPLY = "ירושלים היא עיר עתיקה וחשובה, ויש בה מקומות רבים ומעניינים לבקר בהם."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "n": len(ms),
    }


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# --- store --------------------------------------------------------------------------------
async def seed(store: SessionStore, n_sessions: int, per_session: int, n_long: int) -> None:
    now = utcnow()
    session_rows = []
    message_rows: list[dict[str, Any]] = []
    for pk in range(1, n_sessions + n_long + 1):
        session_rows.append(
            {
                "pk": pk,
                "id": f"chat_bench_{pk:08d}",
                "owner": OWNER,
                "title": "שיחת מבחן",
                "language": "hebrew",
                "created_at": now,
                "updated_at": now,
            }
        )
    async with store.engine.begin() as conn:
        for i in range(0, len(session_rows), 2000):
            await conn.execute(insert(sessions), session_rows[i : i + 2000])
    mpk = 0
    for pk in range(1, n_sessions + n_long + 1):
        count = per_session if pk <= n_sessions else 50
        for seq in range(1, count + 1):
            mpk += 1
            message_rows.append(
                {
                    "pk": mpk,
                    "session_pk": pk,
                    "seq": seq,
                    "role": "user" if seq % 2 else "assistant",
                    "content": HEBREW_USER if seq % 2 else HEBREW_REPLY,
                    "status": COMPLETE,
                    "created_at": now,
                    "token_count": 20,
                }
            )
        if len(message_rows) >= 20000:
            async with store.engine.begin() as conn:
                await conn.execute(insert(messages), message_rows)
            message_rows = []
    if message_rows:
        async with store.engine.begin() as conn:
            await conn.execute(insert(messages), message_rows)
    async with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            for table in ("sessions", "messages"):
                sql = (
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'pk'), "  # noqa: S608 - constant table names
                    f"(SELECT max(pk) FROM {table}))"
                )
                await conn.exec_driver_sql(sql)
    await settle(store)


async def settle(store: SessionStore) -> None:
    """Let the database digest the bulk load before anything is timed.

    10,000 sessions arrive here in seconds, not over months: PostgreSQL would otherwise
    spend the measured minute auto-vacuuming 200,000 fresh rows and flushing their pages
    (commits then stalled for 30-60 ms in unsettled runs), and SQLite would carry a WAL
    full of them. Vacuum, analyze and checkpoint first, as a server that has been running
    would have.
    """
    async with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql("VACUUM ANALYZE")
            await autocommit.exec_driver_sql("CHECKPOINT")
    if store.dialect == "sqlite":  # outside any transaction, as a checkpoint must be
        raw = sqlite3.connect(str(store.engine.url.database), isolation_level=None)
        try:
            raw.execute("ANALYZE")
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


async def measure_store(url: str, args: argparse.Namespace) -> dict[str, Any]:
    # Generous timeouts: seeding sends 20,000-row batches on a busy machine.
    store = await open_store(url, Path(tempfile.gettempdir()), busy_timeout=60)
    try:
        started = time.perf_counter()
        await seed(store, args.sessions, 20, args.long_sessions)
        seeded = time.perf_counter() - started
        rng = random.Random(7)
        append, finish, turn = [], [], []
        last_seq: dict[str, int] = {}
        for _ in range(args.samples):
            session_id = f"chat_bench_{rng.randint(1, args.sessions):08d}"
            expected = last_seq.get(session_id, 20)
            t0 = time.perf_counter()
            record = await store.append_turn(
                OWNER,
                session_id,
                language="hebrew",
                expected_last_seq=expected,
                new_messages=[NewMessage("user", HEBREW_USER, 20)],
            )
            t1 = time.perf_counter()
            await store.finish_message(record.assistant_pk, HEBREW_REPLY, COMPLETE)
            t2 = time.perf_counter()
            last_seq[session_id] = expected + 2
            append.append(t1 - t0)
            finish.append(t2 - t1)
            turn.append(t2 - t0)
        loads = []
        for _ in range(args.samples):
            pk = rng.randint(args.sessions + 1, args.sessions + args.long_sessions)
            t0 = time.perf_counter()
            history = await store.history(OWNER, f"chat_bench_{pk:08d}")
            loads.append(time.perf_counter() - t0)
            assert history is not None
            assert len(history.messages) == 50
        # The floor on this machine: one trivial statement in a transaction, same driver.
        floor = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            async with store.engine.connect() as conn, conn.begin():
                await conn.execute(text("SELECT 1"))
            floor.append(time.perf_counter() - t0)
        return {
            "seed_seconds": round(seeded, 1),
            "select_1_floor": summary_ms(floor),
            "append_turn_commit": summary_ms(append),
            "finish_reply_commit": summary_ms(finish),
            "turn_total_two_commits": summary_ms(turn),
            "load_50_message_history": summary_ms(loads),
        }
    finally:
        await store.close()


async def pg_admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def run_store(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "sessions": args.sessions,
        "messages_per_session": 20,
        "long_sessions": args.long_sessions,
    }
    with tempfile.TemporaryDirectory(dir=args.sqlite_dir) as tmp:
        print("sqlite: seeding…", flush=True)
        results["sqlite"] = await measure_store(database_url(None, Path(tmp)), args)
        print(json.dumps(results["sqlite"], indent=1), flush=True)
    name = f"llm_api_bench_{uuid.uuid4().hex[:8]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        print("postgresql: seeding…", flush=True)
        results["postgresql"] = await measure_store(
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", args
        )
        print(json.dumps(results["postgresql"], indent=1), flush=True)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


# --- engine ---------------------------------------------------------------------------------
PROMPT_EVAL = re.compile(r"prompt eval time =\s+([\d.]+) ms /\s+(\d+) tokens")
QUESTIONS = [
    "שלום! ספר לי על ירושלים.",
    "ומה לגבי תל אביב?",
    "איזו עיר גדולה יותר?",
    "מה כדאי לאכול בחיפה?",
    "ספר לי על הים המלח.",
    "מתי הכי טוב לטייל בגליל?",
    "מה ההבדל בין הנגב לערבה?",
    "תן לי שלושה רעיונות לטיול משפחתי.",
    "כמה זמן לוקחת הנסיעה מאילת לירושלים?",
    "תודה רבה! תסכם את השיחה במשפט אחד.",
]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


class UsageLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.usages: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        usage = getattr(record, "usage", None)
        if isinstance(usage, dict):
            self.usages.append(usage)


async def conversation(engine_url: str, turns: int, max_tokens: int, tmp: Path) -> dict[str, Any]:
    import httpx
    import uvicorn

    from llm_api.app import create_app
    from llm_api.settings import Settings

    settings = Settings(
        engine_url=engine_url,
        data_dir=tmp,
        chat_titles=False,
        max_model_len=4096,
        max_tokens_cap=1024,
    )
    handler = UsageLog()
    logging.getLogger("llm_api.chat.service").addHandler(handler)
    logging.getLogger("llm_api.chat.service").setLevel(logging.INFO)
    port = 18000 + random.randint(0, 999)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.05)
    ttfts = []
    session_id = f"chat_bench_{uuid.uuid4().hex[:12]}"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for turn in range(turns):
                body = {
                    "messages": [{"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]}],
                    "session_id": session_id,
                    "max_tokens": max_tokens,
                    "temperature": 0,
                }
                t0 = time.perf_counter()
                first = None
                async with client.stream("POST", "/api/chat/stream", json=body) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            event = orjson.loads(line[5:])
                            if first is None and event["type"] == "content":
                                first = time.perf_counter() - t0
                assert first is not None
                ttfts.append(first)
    finally:
        server.should_exit = True
        await task
        logging.getLogger("llm_api.chat.service").removeHandler(handler)
    prompt = [u.get("prompt_tokens") for u in handler.usages]
    cached = [(u.get("prompt_tokens_details") or {}).get("cached_tokens") for u in handler.usages]
    return {
        "ttft_ms": [round(t * 1000, 1) for t in ttfts],
        "ttft_turn10_over_turn1": round(ttfts[-1] / ttfts[0], 2),
        "prompt_tokens": prompt,
        "cached_tokens": cached,
    }


async def run_engine(args: argparse.Namespace) -> dict[str, Any]:
    from llm_api.engine.launch import llama_server_command
    from llm_api.settings import Settings

    variants = {
        "default": [],
        "swa-full": ["--swa-full"],
        "cache-reuse-256": ["--cache-reuse", "256"],
    }
    results: dict[str, Any] = {"max_tokens": args.max_tokens}
    for name, extra in variants.items():
        if args.variants and name not in args.variants:
            continue
        port = 18999 - len(results)
        settings = Settings(
            vllm_port=port,
            data_dir=REPO / "data",
            max_model_len=4096,
            max_tokens_cap=1024,
            engine_parallel=1,
            engine_threads=2,
        )
        command = [*llama_server_command(settings, "gemma-3-270m"), *extra]
        with tempfile.TemporaryDirectory() as tmp:
            log_path = Path(tmp) / "engine.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 120
                while not _healthy(url):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(log_path.read_text()[-2000:])
                    await asyncio.sleep(0.3)
                print(f"engine {name}: conversation…", flush=True)
                results[name] = await conversation(url, args.turns, args.max_tokens, Path(tmp))
                results[name]["flags"] = extra
                # llama-server's own account: prompt tokens it had to evaluate each turn.
                evaluated = PROMPT_EVAL.findall(log_path.read_text(errors="replace"))
                results[name]["engine_prompt_eval"] = [
                    {"tokens": int(n), "ms": float(ms)} for ms, n in evaluated
                ]
                print(json.dumps(results[name]), flush=True)
            finally:
                process.terminate()
                process.wait(10)
    return results


# --- gateway overhead ---------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(engine_url: str, port: int, data_dir: Path, src: Path | None) -> Any:
    env = {
        **os.environ,
        "LLM_API_ENGINE_URL": engine_url,
        "LLM_API_LOG_LEVEL": "WARNING",
        "LLM_API_DATA_DIR": str(data_dir),
        "LLM_API_CHAT_TITLES": "false",
    }
    if src is not None:
        env["PYTHONPATH"] = str(src)  # an older checkout's package, ahead of the installed one
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "llm_api.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--log-level", "warning", "--no-access-log"],
        env=env,
    )  # fmt: skip


async def first_token(client: Any, url: str, body: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    first = None
    async with client.stream("POST", url + "/api/chat/stream", json=body) as response:
        assert response.status_code == 200, response.status_code
        async for line in response.aiter_lines():
            if first is None and line.startswith("data:") and b'"content"' in line.encode():
                first = time.perf_counter() - t0
    assert first is not None
    return first


async def run_gateway(args: argparse.Namespace) -> dict[str, Any]:
    """TTFT through a gateway without the store (``--base-src``) and with it, interleaved."""
    import httpx

    engine_port = free_port()
    engine = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_engine_server", "--port", str(engine_port),
         "--chunks", "4", "--delay", "0.001"],
    )  # fmt: skip
    engine_url = f"http://127.0.0.1:{engine_port}"
    gateways = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources: dict[str, Path | None] = {"with_store": None}
        if args.base_src:
            sources = {"without_store": Path(args.base_src), **sources}
        processes = []
        for name, src in sources.items():
            port = free_port()
            processes.append(start_gateway(engine_url, port, Path(tmp) / name, src))
            gateways[name] = f"http://127.0.0.1:{port}"
        try:
            for url in [engine_url, *gateways.values()]:
                deadline = time.monotonic() + 60
                while not _healthy_path(url):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} did not start")
                    await asyncio.sleep(0.2)
            ttft: dict[str, list[float]] = {name: [] for name in gateways}
            ttft_session: list[float] = []
            question = [{"role": "user", "content": "שלום, ספר לי על ירושלים"}]
            async with httpx.AsyncClient(timeout=30) as client:
                for url in gateways.values():  # warm pools and the model lookup
                    await first_token(client, url, {"messages": question})
                for i in range(args.samples):
                    for name, url in gateways.items():
                        ttft[name].append(await first_token(client, url, {"messages": question}))
                    # A continuing conversation (20 sessions in rotation, growing histories).
                    body = {
                        "messages": [{"role": "user", "content": f"שאלה מספר {i} על ירושלים"}],
                        "session_id": f"chat_bench_turns_{i % 20:04d}",
                    }
                    ttft_session.append(await first_token(client, gateways["with_store"], body))
        finally:
            for process in [*processes, engine]:
                process.terminate()
                process.wait(10)
    results: dict[str, Any] = {name: summary_ms(values) for name, values in ttft.items()}
    results["with_store_continuing_session"] = summary_ms(ttft_session)
    if "without_store" in results:
        results["added_p50_ms"] = round(
            results["with_store"]["p50_ms"] - results["without_store"]["p50_ms"], 3
        )
    return results


def _healthy_path(url: str) -> bool:
    """The fake engine answers /health, a gateway /ping."""
    for path in ("/health", "/ping"):
        try:
            with urllib.request.urlopen(url + path, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return True
        except OSError:
            continue
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["store", "engine", "gateway"])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--long-sessions", type=int, default=200)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--variants", nargs="*", default=None, help="engine flag sets to run")
    parser.add_argument("--sqlite-dir", default=None, help="where the SQLite file goes")
    parser.add_argument("--base-src", default=None, help="src/ of a checkout without the store")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runner = {"store": run_store, "engine": run_engine, "gateway": run_gateway}[args.scenario]
    # Load averages (1, 5, 15 min) before and after: the figures mean little without them.
    started = {"started_utc": datetime.now(UTC).isoformat(timespec="seconds")}
    load_before = os.getloadavg()
    results = {"machine": machine() | started, args.scenario: asyncio.run(runner(args))}
    results["machine"]["loadavg_before"] = [round(x, 2) for x in load_before]
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print("load average before / after:", *results["machine"]["loadavg_before"], "/",
          *results["machine"]["loadavg_after"], flush=True)  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
