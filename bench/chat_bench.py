"""The gateway's own cost on ``/api/chat/stream``: direct engine vs through the gateway.

Two scenarios, both interleaved (direct round, gateway round, direct round, …) so that
machine noise hits both sides alike:

* ``fake``: a deterministic fake engine (64 chunks, 20 ms apart) in its own process; the
  gateway under uvicorn with one worker in another; this process is the client.
  Reports added time-to-first-token, chunk throughput and the largest inter-chunk gap.
* ``real``: the embedded llama-server with the bundled model; tokens/s at 1 and 4 streams.

Run:  .venv/bin/python -m bench.chat_bench fake|real [--rounds N] [--out docs/chat-bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[1]


@dataclass
class StreamResult:
    ttft: float
    chunks: int
    gaps: list[float]
    started: float
    ended: float


@dataclass
class RoundResult:
    streams: list[StreamResult] = field(default_factory=list)
    wall: float = 0.0

    @property
    def chunks(self) -> int:
        return sum(s.chunks for s in self.streams)

    @property
    def throughput(self) -> float:
        return self.chunks / self.wall if self.wall else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], gateway: bool
) -> StreamResult:
    start = time.perf_counter()
    first: float | None = None
    last = start
    gaps: list[float] = []
    chunks = 0
    async with session.post(url, data=orjson.dumps(body),
                            headers={"Content-Type": "application/json"}) as response:  # fmt: skip
        response.raise_for_status()
        async for line in response.content:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            event = orjson.loads(payload)
            if gateway:
                has_text = event.get("type") == "content"
            else:
                choices = event.get("choices") or [{}]
                has_text = bool((choices[0].get("delta") or {}).get("content"))
            if not has_text:
                continue
            now = time.perf_counter()
            if first is None:
                first = now
            else:
                gaps.append(now - last)
            last = now
            chunks += 1
    assert first is not None, "no content arrived"
    return StreamResult(first - start, chunks, gaps, start, last)


async def run_round(url: str, body: dict[str, Any], streams: int, gateway: bool) -> RoundResult:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(session, url, body, gateway) for _ in range(streams))
        )
        wall = time.perf_counter() - start
    return RoundResult(list(results), wall)


def wait_http(url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(
    engine_url: str, port: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LLM_API_ENGINE_URL": engine_url, "LLM_API_LOG_LEVEL": "WARNING",
           "LLM_API_DATA_DIR": str(REPO / "data" / "bench"),
           # The relay is measured, not the admission limits (256 streams would meet the
           # engine gate's 503) or the engine connection pool: lift them, as the /v1
           # benchmark does.
           "LLM_API_CONNECTION_POOL_SIZE": "1024", "LLM_API_MAX_CONCURRENT_REQUESTS": "4096",
           "LLM_API_MAX_STREAMS_PER_KEY": "4096", "LLM_API_RATE_LIMIT_RPM": "10000000",
           **(extra_env or {})}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "llm_api.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--log-level", "warning", "--no-access-log"],
        env=env,
    )  # fmt: skip


def summarize(
    name: str, streams: int, direct: list[RoundResult], gateway: list[RoundResult]
) -> dict[str, Any]:
    def ttfts(rounds: list[RoundResult]) -> list[float]:
        return [s.ttft for r in rounds for s in r.streams]

    def gaps(rounds: list[RoundResult]) -> list[float]:
        return [g for r in rounds for s in r.streams for g in s.gaps]

    d_tp = statistics.mean(r.throughput for r in direct)
    g_tp = statistics.mean(r.throughput for r in gateway)
    return {
        "scenario": name,
        "streams": streams,
        "rounds": len(direct),
        "ttft_p50_direct_ms": percentile(ttfts(direct), 50) * 1000,
        "ttft_p50_gateway_ms": percentile(ttfts(gateway), 50) * 1000,
        "ttft_p50_added_ms": (percentile(ttfts(gateway), 50) - percentile(ttfts(direct), 50))
        * 1000,
        "ttft_p99_added_ms": (percentile(ttfts(gateway), 99) - percentile(ttfts(direct), 99))
        * 1000,
        "throughput_direct_per_s": d_tp,
        "throughput_gateway_per_s": g_tp,
        "throughput_ratio": g_tp / d_tp if d_tp else float("nan"),
        "max_gap_direct_ms": max(gaps(direct), default=0.0) * 1000,
        "max_gap_gateway_ms": max(gaps(gateway), default=0.0) * 1000,
        "gap_p99_gateway_ms": percentile(gaps(gateway), 99) * 1000,
    }


@dataclass(frozen=True)
class Scenario:
    name: str
    engine_url: str
    gateway_url: str
    direct_body: dict[str, Any]
    gateway_body: dict[str, Any]
    gateway_pid: int


def cpu_seconds(pid: int) -> float:
    """CPU time of all threads of a process, in ns resolution (/proc schedstat, Linux)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


async def interleave(scenario: Scenario, streams: int, rounds: int) -> dict[str, Any]:
    direct: list[RoundResult] = []
    through: list[RoundResult] = []
    gateway_cpu = 0.0
    for _ in range(rounds):
        direct.append(
            await run_round(
                scenario.engine_url + "/v1/chat/completions",
                scenario.direct_body,
                streams,
                gateway=False,
            )
        )
        before = cpu_seconds(scenario.gateway_pid)
        through.append(
            await run_round(
                scenario.gateway_url + "/api/chat/stream",
                scenario.gateway_body,
                streams,
                gateway=True,
            )
        )
        gateway_cpu += cpu_seconds(scenario.gateway_pid) - before
    result = summarize(scenario.name, streams, direct, through)
    result["gateway_cpu_us_per_chunk"] = gateway_cpu / sum(r.chunks for r in through) * 1e6
    print(json.dumps(result, indent=2))
    return result


async def fake_scenario(rounds: int) -> list[dict[str, Any]]:
    engine_port, gateway_port = free_port(), free_port()
    engine = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_engine_server", "--port", str(engine_port),
         "--chunks", "64", "--delay", "0.02"],
    )  # fmt: skip
    engine_url = f"http://127.0.0.1:{engine_port}"
    gateway = start_gateway(engine_url, gateway_port)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    try:
        wait_http(engine_url + "/health")
        wait_http(gateway_url + "/ping")
        messages = [{"role": "user", "content": "שלום, ספר לי על ירושלים"}]
        direct_body = {"model": "fake-model", "messages": messages, "stream": True}
        gateway_body = {"messages": messages, "stream": True}
        # Warm both paths (connection pools, first-call model lookup).
        await run_round(gateway_url + "/api/chat/stream", gateway_body, 2, gateway=True)
        scenario = Scenario(
            "fake-64x20ms", engine_url, gateway_url, direct_body, gateway_body, gateway.pid
        )
        plan = ((1, rounds * 5), (64, rounds), (256, max(rounds // 2, 1)))
        return [await interleave(scenario, streams, n) for streams, n in plan]
    finally:
        for process in (gateway, engine):
            process.terminate()
            process.wait(10)


async def real_scenario(rounds: int) -> list[dict[str, Any]]:
    from llm_api.engine.launch import llama_server_command
    from llm_api.settings import Settings

    engine_port, gateway_port = free_port(), free_port()
    settings = Settings(vllm_port=engine_port, data_dir=REPO / "data", max_model_len=4096,
                        max_tokens_cap=1024, engine_parallel=4, engine_threads=2)  # fmt: skip
    engine = subprocess.Popen(
        llama_server_command(settings, "gemma-3-270m"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    engine_url = f"http://127.0.0.1:{engine_port}"
    # No background titles: each new conversation's title call would take engine slots
    # (and overwrite their cached prompts) while the next direct round runs, which made the
    # direct side up to 1 s slower to its first token and the comparison meaningless.
    gateway = start_gateway(engine_url, gateway_port, {"LLM_API_CHAT_TITLES": "false"})
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    try:
        wait_http(engine_url + "/health", timeout=300)
        wait_http(gateway_url + "/ping")
        messages = [{"role": "user", "content": "Write a long story about a cat in Tel Aviv."}]
        common = {"messages": messages, "stream": True, "max_tokens": 128, "temperature": 0}
        # The gateway adds its system prompt; send the same prompt directly for fairness.
        system = {"role": "system", "content": _english_system_prompt()}
        direct_body = {**common, "messages": [system, *messages], "model": "gemma-3-270m"}
        await run_round(gateway_url + "/api/chat/stream", common, 1, gateway=True)
        scenario = Scenario(
            "llama-server-gemma3-270m", engine_url, gateway_url, direct_body, common, gateway.pid
        )
        return [await interleave(scenario, streams, rounds) for streams in (1, 4)]
    finally:
        for process in (gateway, engine):
            process.terminate()
            process.wait(10)


def _english_system_prompt() -> str:
    from llm_api.chat.prompts import SYSTEM_PROMPTS
    from llm_api.chat.schemas import Language

    return SYSTEM_PROMPTS[Language.ENGLISH]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {python}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["fake", "real"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runner = fake_scenario if args.scenario == "fake" else real_scenario
    results = asyncio.run(runner(args.rounds))
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "results": results}  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
