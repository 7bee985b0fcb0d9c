"""What a signed-in (cookie) request costs over an API-key request, and sign-in's p50.

One gateway (uvicorn, one worker, SQLite store in a temporary folder) in this process; an
httpx client on loopback sends ``GET /api/sessions`` (a guarded route that reads the store)
in interleaved rounds: key, cookie, key, cookie, … so machine noise hits both sides alike.
The figure is the same-run difference of the medians and their ratio. The session is not
cached: every cookie request reads the session joined with its user (one query), so
that a revoked session or a disabled user fails on the very next request; the key path reads
its key the same way. Sign-in is timed with the Argon2id parameters given (the production
defaults unless overridden), between the rounds.

Run:  .venv/bin/python -m bench.people_bench [--requests 200] [--rounds 6] [--logins 20] [--out F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from tests.conftest import serve_gateway

from llm_api.auth.keys import KeyStore
from llm_api.chat.store import open_store
from llm_api.people.passwords import Passwords
from llm_api.people.store import PeopleStore
from llm_api.settings import Settings

PASSWORD = "סיסמה-לבדיקת-ביצועים"  # noqa: S105 - the benchmark user's, in a temporary store


async def _prepare(settings: Settings) -> str:
    store = await open_store(settings.database_url, settings.data_dir)
    try:
        raw, _ = await KeyStore(store.db).create("bench", frozenset({"chat"}), rpm=10**9)
        hashed = await Passwords.from_settings(settings).hash(PASSWORD)
        await PeopleStore(store.engine).create_user(
            "bench-user", role="member", source="local", password_hash=hashed
        )
    finally:
        await store.close()
    return raw


async def _timed(http: httpx.AsyncClient, n: int, **kwargs: object) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = await http.get("/api/sessions", **kwargs)  # type: ignore[arg-type]  # httpx kwargs
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return samples


async def run(args: argparse.Namespace) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="people-bench-"))
    settings = Settings(
        engine_url="http://127.0.0.1:9",
        data_dir=folder,
        auth="required",
        chat_titles=False,
        rate_limit_rpm=10**9,
        login_attempts_per_user=10**6,
        login_attempts_per_address=10**6,
        argon2_time_cost=args.time_cost,
        argon2_memory_kib=args.memory_kib,
        log_level="WARNING",
    )
    key = await _prepare(settings)
    key_side: list[float] = []
    cookie_side: list[float] = []
    logins: list[float] = []
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url) as keyed,
        httpx.AsyncClient(base_url=url) as browser,
    ):
        body = {"username": "bench-user", "password": PASSWORD}
        assert (await browser.post("/api/auth/login", json=body)).status_code == 200
        await _timed(keyed, 20, headers={"X-API-Key": key})  # warm-up, both sides
        await _timed(browser, 20)
        per_round = max(1, args.logins // args.rounds)
        for _ in range(args.rounds):
            key_side += await _timed(keyed, args.requests, headers={"X-API-Key": key})
            cookie_side += await _timed(browser, args.requests)
            async with httpx.AsyncClient(base_url=url) as fresh:
                for _ in range(per_round):
                    started = time.perf_counter()
                    response = await fresh.post("/api/auth/login", json=body)
                    logins.append(time.perf_counter() - started)
                    assert response.status_code == 200
    key_p50, cookie_p50 = statistics.median(key_side), statistics.median(cookie_side)
    return {
        "requests_per_side": len(key_side),
        "key_p50_ms": round(key_p50 * 1000, 3),
        "cookie_p50_ms": round(cookie_p50 * 1000, 3),
        "cookie_added_ms": round((cookie_p50 - key_p50) * 1000, 3),
        "cookie_over_key": round(cookie_p50 / key_p50, 3),
        "key_p99_ms": round(sorted(key_side)[int(len(key_side) * 0.99)] * 1000, 3),
        "cookie_p99_ms": round(sorted(cookie_side)[int(len(cookie_side) * 0.99)] * 1000, 3),
        "session_cache": "none (session joined with its user, read on every request)",
        "logins": len(logins),
        "login_p50_ms": round(statistics.median(logins) * 1000, 1),
        "argon2id": {"time_cost": args.time_cost, "memory_kib": args.memory_kib, "parallelism": 1},
        "load_before": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per side per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--logins", type=int, default=24)
    parser.add_argument("--time-cost", type=int, default=Settings().argon2_time_cost)
    parser.add_argument("--memory-kib", type=int, default=Settings().argon2_memory_kib)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    before = os.getloadavg()
    result = asyncio.run(run(args))
    result["load_before"] = before
    result["load_after"] = os.getloadavg()
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
