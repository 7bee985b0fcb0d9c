"""What ``/v1/chat/completions`` costs over talking to the engine directly.

A deterministic fake engine (tests/fakes.py: 64 content chunks, 20 ms apart) runs in its
own process, the gateway under uvicorn with one worker in another, and this process is the
client. Every scenario alternates direct and gateway requests (interleaved) so that noise
from other work on the machine hits both sides alike.

* 1 stream, sequential: added time to first token, p50.
* 64 concurrent streams: added TTFT p99; chunk throughput, gateway / direct.
* 256 concurrent streams: the largest gap between two chunks of one stream.
* The gateway worker's CPU time (all its threads, from /proc/<pid>/task/*/schedstat, ns;
  /proc/<pid>/stat utime+stime as a cross-check), divided by the chunks it relayed.

With ``--floor`` a third side joins the same interleaved run: a bare relay
(bench/relay_floor.py: uvicorn, the same aiohttp client, no framework, no checks, no
metrics), measured the same way. What it costs is what Python, uvicorn, aiohttp and the
machine cost before the gateway does anything of its own; the gateway's figures are read
against it.

Run:  .venv/bin/python -m bench.openai_relay_bench [--rounds 3] [--single 40] [--floor]
                                                    [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[1]
CHUNKS = 64
EVENTS = CHUNKS + 3  # the role chunk, the content chunks, the finish and the usage chunks
DELAY = 0.02


# --- the fake engine, as its own process ------------------------------------------------
async def serve_engine(port: int) -> None:
    from aiohttp import web
    from tests.fakes import FakeEngine, FakeEngineState

    state = FakeEngineState(chunks=[f"tok{i} " for i in range(CHUNKS)], chunk_delay=DELAY)
    engine = FakeEngine(state)
    runner = web.AppRunner(engine.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    while True:
        # Forget what was served: the fake keeps every request for tests to read.
        await asyncio.sleep(1)
        state.requests.clear()
        state.streams.clear()


# --- measuring --------------------------------------------------------------------------
@dataclass
class Stream:
    ttft: float
    chunks: int
    max_gap: float


@dataclass
class Side:
    ttfts: list[float] = field(default_factory=list)
    throughputs: list[float] = field(default_factory=list)
    max_gaps: list[float] = field(default_factory=list)
    chunks: int = 0


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes) -> Stream:
    start = time.perf_counter()
    first = 0.0
    last = start
    max_gap = 0.0
    chunks = 0
    async with session.post(
        url, data=body, headers={"Content-Type": "application/json"}
    ) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}: {await response.text()}")
        async for line in response.content:
            if not line.startswith(b"data:") or line.startswith(b"data: [DONE]"):
                continue
            now = time.perf_counter()
            if chunks == 0:
                first = now - start
            else:
                max_gap = max(max_gap, now - last)
            last = now
            chunks += 1
    if chunks != EVENTS:  # a relay that loses or adds events must not be timed
        raise RuntimeError(f"{url} sent {chunks} events, not {EVENTS}")
    return Stream(first, chunks, max_gap)


def cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        # A thread may end between listing and reading.
        with contextlib.suppress(OSError, ValueError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@dataclass
class Target:
    name: str
    url: str
    body: bytes
    pid: int | None = None  # a relay's worker process; None for the engine itself


async def concurrent_round(
    session: aiohttp.ClientSession, target: Target, streams: int, side: Side
) -> None:
    start = time.perf_counter()
    results = await asyncio.gather(
        *(one_stream(session, target.url, target.body) for _ in range(streams))
    )
    wall = time.perf_counter() - start
    chunks = sum(r.chunks for r in results)
    side.chunks += chunks
    side.ttfts.extend(r.ttft for r in results)
    side.throughputs.append(chunks / wall)
    side.max_gaps.append(max(r.max_gap for r in results))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


GATEWAY_APP = "llm_api.app:create_app"
FLOOR_APP = "bench.relay_floor:create_app"


def start_relay(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--backlog", "2048"],
        cwd=REPO, env=env,
    )  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    engine_port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    env = {
        **os.environ,
        "LLM_API_ENGINE_URL": f"http://127.0.0.1:{engine_port}",
        "LLM_API_DATA_DIR": str(data_dir),
        "LLM_API_LOG_LEVEL": "WARNING",
        "LLM_API_CONNECTION_POOL_SIZE": "1024",
        # The benchmark measures the relay, not the admission limits: lift them.
        "LLM_API_MAX_CONCURRENT_REQUESTS": "4096",
        "LLM_API_MAX_STREAMS_PER_KEY": "4096",
        "LLM_API_RATE_LIMIT_RPM": "10000000",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.openai_relay_bench", "--serve-engine", str(engine_port)],
            cwd=REPO,
        )
    ]
    messages = [{"role": "user", "content": "שלום! ספר לי משהו."}]
    targets = [
        Target(
            "direct",
            f"http://127.0.0.1:{engine_port}/v1/chat/completions",
            orjson.dumps(
                {
                    "model": "fake-model",
                    "messages": messages,
                    "stream": True,
                    "max_tokens": 64,
                    "stream_options": {"include_usage": True},
                }
            ),
        )
    ]
    relays = {"gateway": args.app} | ({"floor": FLOOR_APP} if args.floor else {})
    body = orjson.dumps(
        {"model": "default", "messages": messages, "stream": True, "max_tokens": 64}
    )
    for name, app in relays.items():
        port = free_port()
        process = start_relay(app, port, env)
        processes.append(process)
        targets.append(
            Target(name, f"http://127.0.0.1:{port}/v1/chat/completions", body, process.pid)
        )
    try:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await wait_up(session, f"http://127.0.0.1:{engine_port}/health")
            for target in targets[1:]:
                await wait_up(session, target.url.replace("/v1/chat/completions", "/ping"))
            for target in targets:  # warm every path (pools, model lookup)
                await asyncio.gather(*(one_stream(session, target.url, target.body)
                                       for _ in range(8)))  # fmt: skip
            results = await measure(session, args, targets)
            return {"app": args.app, **results}
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class Cpu:
    """A relay worker's CPU time and the chunks it relayed, per scenario (streams)."""

    ns: dict[int, int] = field(default_factory=dict)
    ticks: int = 0
    chunks: dict[int, int] = field(default_factory=dict)

    def add(self, streams: int, ns: int, ticks: int, chunks: int) -> None:
        self.ns[streams] = self.ns.get(streams, 0) + ns
        self.chunks[streams] = self.chunks.get(streams, 0) + chunks
        self.ticks += ticks


async def measure(
    session: aiohttp.ClientSession, args: argparse.Namespace, targets: list[Target]
) -> dict[str, Any]:
    """Every scenario with the targets interleaved; figures for each relay against direct."""
    cpu = {t.name: Cpu() for t in targets if t.pid is not None}

    async def timed(target: Target, side: Side, streams: int, work: Any) -> None:
        if target.pid is None:
            await work()
            return
        before = cpu_ns(target.pid), cpu_ticks(target.pid), side.chunks
        await work()
        cpu[target.name].add(
            streams,
            cpu_ns(target.pid) - before[0],
            cpu_ticks(target.pid) - before[1],
            side.chunks - before[2],
        )

    def turns(i: int) -> list[Target]:
        # Each request (1 stream) or round (64, 256) starts with the next target in turn.
        return targets[i % len(targets) :] + targets[: i % len(targets)]

    # 1 stream, one request at a time.
    single = {t.name: Side() for t in targets}
    for i in range(args.single):
        for target in turns(i):
            side = single[target.name]

            async def one(target: Target = target, side: Side = side) -> None:
                result = await one_stream(session, target.url, target.body)
                side.ttfts.append(result.ttft)
                side.chunks += result.chunks

            await timed(target, side, 1, one)

    scenarios: dict[int, dict[str, Side]] = {}
    for streams in (64, 256):
        sides = {t.name: Side() for t in targets}
        for r in range(args.rounds):
            for target in turns(r):
                side = sides[target.name]

                async def round_(
                    target: Target = target, side: Side = side, n: int = streams
                ) -> None:
                    await concurrent_round(session, target, n, side)

                await timed(target, side, streams, round_)
        scenarios[streams] = sides

    s64, s256 = scenarios[64], scenarios[256]
    tick = os.sysconf("SC_CLK_TCK")

    def figures(name: str) -> dict[str, Any]:
        used = cpu[name]
        relayed = sum(used.chunks.values())
        return {
            "added_ttft_p50_ms_1_stream": (
                pct(single[name].ttfts, 50) - pct(single["direct"].ttfts, 50)
            )
            * 1e3,
            "added_ttft_p99_ms_64": (pct(s64[name].ttfts, 99) - pct(s64["direct"].ttfts, 99)) * 1e3,
            "throughput_ratio_64": statistics.mean(s64[name].throughputs)
            / statistics.mean(s64["direct"].throughputs),
            "throughput_ratio_256": statistics.mean(s256[name].throughputs)
            / statistics.mean(s256["direct"].throughputs),
            "gateway_cpu_us_per_chunk": sum(used.ns.values()) / 1e3 / relayed,
            "gateway_cpu_us_per_chunk_by_streams": {
                str(n): used.ns[n] / 1e3 / used.chunks[n] for n in sorted(used.ns)
            },
            "gateway_cpu_us_per_chunk_from_stat_ticks": used.ticks / tick * 1e6 / relayed,
            "gateway_chunks_relayed": relayed,
        }

    return {
        "single_stream_requests_per_side": args.single,
        "rounds": args.rounds,
        "ttft_p50_ms_1_stream": {k: pct(v.ttfts, 50) * 1e3 for k, v in single.items()},
        "ttft_p99_ms_64": {k: pct(v.ttfts, 99) * 1e3 for k, v in s64.items()},
        "throughput_chunks_per_s_64": {k: statistics.mean(v.throughputs) for k, v in s64.items()},
        "max_gap_ms_256": {k: max(v.max_gaps) * 1e3 for k, v in s256.items()},
        **figures("gateway"),
        # The same figures for the bare relay (--floor): what Python, uvicorn, aiohttp and
        # this machine cost before the gateway does anything of its own.
        **({"floor": figures("floor")} if "floor" in cpu else {}),
        # What waking an idle Python process costs here, whatever it then does: a bare
        # uvloop loop that sleeps 20 ms at a time (the 1-stream pace) and does nothing else.
        "idle_loop_cpu_us_per_wake": wake_floor_us(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "load_average_at_end": os.getloadavg(),
    }


_WAKE_FLOOR = """
import asyncio, os, uvloop
def cpu():
    tasks = os.listdir("/proc/self/task")
    return sum(int(open(f"/proc/self/task/{t}/schedstat").read().split()[0]) for t in tasks)
async def main():
    start = cpu()
    for _ in range(200):
        await asyncio.sleep(0.02)
    print((cpu() - start) / 200 / 1e3)
uvloop.run(main())
"""


def wake_floor_us() -> float:
    """CPU per wake-up of an otherwise idle event loop, in its own process (µs)."""
    out = subprocess.run(
        [sys.executable, "-c", _WAKE_FLOOR], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


async def wait_up(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-engine", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", type=int, default=40)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--app", default=GATEWAY_APP, help="the gateway's app factory")
    parser.add_argument(
        "--floor",
        action="store_true",
        help=f"also measure a bare relay ({FLOOR_APP}), interleaved with the others",
    )
    args = parser.parse_args()
    if args.serve_engine:
        asyncio.run(serve_engine(args.serve_engine))
        return
    results = asyncio.run(run(args))
    text = orjson.dumps(results, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
