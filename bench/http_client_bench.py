"""httpx against aiohttp as the engine client of a streaming relay, side by side.

Issue #2 asks for this measurement before choosing the engine client; the project chose
aiohttp + orjson (``llm_api.engine.client``). Here the choice is checked:

* A deterministic fake engine (``bench/fake_engine_server.py``: 64 content chunks, 20 ms
  apart, OpenAI SSE) runs in its own process.
* Four minimal relays, each its own process under uvicorn (uvloop + httptools, one
  worker), identical except for how they read the engine. Each parses the client's JSON
  body and re-encodes it (orjson), streams from the engine, parses every engine chunk with
  orjson and emits the same SSE bytes (``data: {"type":"content","content":…}``, then
  ``data: {"type":"done"}``), answering only once the first upstream item is in:

  ``aiohttp-lines``   the project's ``EngineClient.stream_chat`` (aiohttp line iteration,
                      orjson per chunk; what ``/api/chat/stream`` uses)
  ``aiohttp-events``  the project's ``EngineClient.stream_chat_events`` (raw reads cut at
                      event boundaries; what ``/v1/chat/completions`` uses)
  ``httpx-lines``     one long-lived ``httpx.AsyncClient``, ``client.stream`` +
                      ``aiter_lines``
  ``httpx-raw``       the same client, ``aiter_raw`` cut at event boundaries exactly as
                      ``stream_chat_events`` cuts them

  The httpx client gets the same limits as ``EngineClient`` (``EngineLimits`` defaults:
  100 connections, all of them keep-alive, 60 s expiry; connect and pool wait 5 s, read
  300 s), HTTP/1.1, ``trust_env=False`` (as aiohttp's default: no proxy from the env).
* This process is the client (aiohttp, ``bench.chat_bench.run_round``). Each repetition
  runs one round against every target (direct to the engine and the four relays), in an
  order rotated each time so that no target always follows another; at 1, 16 and 64
  concurrent streams.

Reported per relay and concurrency: added TTFT p50/p99 over direct, chunk throughput
relay / direct, the largest inter-chunk gap, and the relay's CPU per content chunk (all
its threads, ``/proc/<pid>/task/*/schedstat``, measured around its own rounds only; it
includes the per-request work, spread over 64 chunks).

Run:  .venv/bin/python -m bench.http_client_bench [--reps 16] [--out docs/http-client-bench.json]
      (``relay --client KIND --engine-url URL --port N`` starts one relay; used internally)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Literal, get_args

import httpx
import orjson

from bench.chat_bench import (
    RoundResult,
    cpu_seconds,
    free_port,
    machine,
    run_round,
    summarize,
    wait_http,
)
from llm_api.engine.client import EngineClient, EngineLimits, JsonObject

REPO = Path(__file__).resolve().parents[1]
ClientKind = Literal["aiohttp-lines", "aiohttp-events", "httpx-lines", "httpx-raw"]
KINDS: tuple[ClientKind, ...] = get_args(ClientKind)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_DONE_EVENT = b'data: {"type":"done"}\n\n'
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


# --- what every relay does with the engine's chunks (shared, so only the client differs) --
def content_event(chunk: JsonObject) -> bytes:
    """The relay's SSE event for one parsed engine chunk (empty when it carries no text)."""
    choices = chunk.get("choices")
    if not choices:
        return b""
    text = (choices[0].get("delta") or {}).get("content")
    if not text:
        return b""
    return b"data: " + orjson.dumps({"type": "content", "content": text}) + b"\n\n"


def relay_block(block: bytes) -> bytes:
    """The relay's SSE bytes for a run of complete engine events (``data: [DONE]`` skipped)."""
    out = []
    for line in block.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            continue
        out.append(content_event(orjson.loads(payload)))
    return b"".join(out)


async def cut_at_events(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Raw reads regrouped into runs of complete events, as ``stream_chat_events`` does."""
    pending = b""
    async for piece in pieces:
        pending = pending + piece if pending else piece
        cut = max(pending.rfind(b"\n\n") + 2, pending.rfind(b"\r\n\r\n") + 4, 0)
        if not cut:
            continue
        block, pending = pending[:cut], pending[cut:]
        yield block


# --- the relay server -----------------------------------------------------------------------
class Relay:
    """A bare ASGI relay: POST any path with an OpenAI streaming body; GET answers 200."""

    def __init__(self, kind: ClientKind, engine_url: str) -> None:
        self.kind = kind
        self.engine_url = engine_url.rstrip("/")
        self.limits = EngineLimits(base_url=self.engine_url)
        self._stack = contextlib.AsyncExitStack()
        self._engine: EngineClient | None = None
        self._httpx: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _open(self) -> None:
        if self.kind.startswith("aiohttp"):
            self._engine = await self._stack.enter_async_context(EngineClient(self.limits))
            return
        lim = self.limits
        self._httpx = await self._stack.enter_async_context(
            httpx.AsyncClient(
                base_url=self.engine_url,
                limits=httpx.Limits(
                    max_connections=lim.pool_size,
                    max_keepalive_connections=lim.pool_size,
                    keepalive_expiry=lim.keepalive_expiry,
                ),
                # aiohttp's "connect" covers the wait for a pool slot too: pool = connect.
                timeout=httpx.Timeout(
                    connect=lim.connect_timeout,
                    read=lim.request_timeout,
                    write=lim.request_timeout,
                    pool=lim.connect_timeout,
                ),
                trust_env=False,
            )
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"pong"})
            return
        request = orjson.loads(body)
        stream = self._upstream(request)
        try:
            try:
                first = await anext(stream)
            except Exception as exc:  # any upstream failure before the first byte: 502
                detail = orjson.dumps({"error": type(exc).__name__})
                await send({"type": "http.response.start", "status": 502, "headers": []})
                await send({"type": "http.response.body", "body": detail})
                return
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for piece in stream:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": _DONE_EVENT})
        finally:
            await stream.aclose()  # a client gone mid-stream closes the engine request

    def _upstream(self, request: JsonObject) -> AsyncGenerator[bytes, None]:
        match self.kind:
            case "aiohttp-lines":
                return self._aiohttp_lines(request)
            case "aiohttp-events":
                return self._aiohttp_events(request)
            case "httpx-lines":
                return self._httpx_lines(request)
            case "httpx-raw":
                return self._httpx_raw(request)

    async def _aiohttp_lines(self, request: JsonObject) -> AsyncGenerator[bytes, None]:
        assert self._engine is not None
        async with contextlib.aclosing(self._engine.stream_chat(request)) as chunks:
            async for chunk in chunks:  # stream_chat dumps the body and parses with orjson
                if event := content_event(chunk):
                    yield event

    async def _aiohttp_events(self, request: JsonObject) -> AsyncGenerator[bytes, None]:
        assert self._engine is not None
        events = self._engine.stream_chat_events(orjson.dumps({**request, "stream": True}))
        async with contextlib.aclosing(events):
            async for block in events:
                if out := relay_block(block):
                    yield out

    async def _httpx_lines(self, request: JsonObject) -> AsyncGenerator[bytes, None]:
        assert self._httpx is not None
        body = orjson.dumps({**request, "stream": True})
        async with self._httpx.stream("POST", "/v1/chat/completions", content=body,
                                      headers=_REQUEST_HEADERS) as response:  # fmt: skip
            if response.status_code != 200:
                raise RuntimeError(f"engine answered {response.status_code}")
            # No break at [DONE]: reading on to the end of the body (the chunked
            # terminator) is what lets httpcore put the connection back in the pool.
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    continue
                if event := content_event(orjson.loads(payload)):
                    yield event

    async def _httpx_raw(self, request: JsonObject) -> AsyncGenerator[bytes, None]:
        assert self._httpx is not None
        body = orjson.dumps({**request, "stream": True})
        async with self._httpx.stream("POST", "/v1/chat/completions", content=body,
                                      headers=_REQUEST_HEADERS) as response:  # fmt: skip
            if response.status_code != 200:
                raise RuntimeError(f"engine answered {response.status_code}")
            async for block in cut_at_events(response.aiter_raw()):
                if out := relay_block(block):
                    yield out


_REQUEST_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


def serve_relay(kind: ClientKind, engine_url: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        Relay(kind, engine_url),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )


# --- the benchmark ----------------------------------------------------------------------------
def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()


async def measure(
    engine_url: str, relays: dict[ClientKind, tuple[str, int]], streams: int, reps: int
) -> list[dict[str, Any]]:
    messages = [{"role": "user", "content": "שלום, ספר לי על ירושלים"}]
    body = {"model": "fake-model", "messages": messages, "stream": True}
    targets: list[ClientKind | Literal["direct"]] = ["direct", *relays]
    rounds: dict[str, list[RoundResult]] = {name: [] for name in targets}
    cpu = dict.fromkeys(relays, 0.0)
    for rep in range(reps):
        order = targets[rep % len(targets) :] + targets[: rep % len(targets)]
        for name in order:
            if name == "direct":
                url = engine_url + "/v1/chat/completions"
                rounds[name].append(await run_round(url, body, streams, gateway=False))
                continue
            url, pid = relays[name]
            before = cpu_seconds(pid)
            rounds[name].append(await run_round(url + "/relay", body, streams, gateway=True))
            cpu[name] += cpu_seconds(pid) - before
    results = []
    for name in relays:
        summary = summarize(name, streams, rounds["direct"], rounds[name])
        row: dict[str, Any] = {"relay": name}
        row |= {key.replace("gateway", "relay"): value for key, value in summary.items()}
        row["relay_cpu_us_per_chunk"] = cpu[name] / sum(r.chunks for r in rounds[name]) * 1e6
        row["ttft_p50_relay_ms_by_round"] = [
            statistics.median(s.ttft for s in r.streams) * 1000 for r in rounds[name]
        ]
        print(json.dumps(row))
        results.append(row)
    return results


async def run(reps: int) -> dict[str, Any]:
    engine_port = free_port()
    engine = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_engine_server", "--port", str(engine_port),
         "--chunks", "64", "--delay", "0.02"],
        cwd=REPO,
    )  # fmt: skip
    engine_url = f"http://127.0.0.1:{engine_port}"
    processes = [engine]
    relays: dict[ClientKind, tuple[str, int]] = {}
    try:
        for kind in KINDS:
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.http_client_bench", "relay", "--client", kind,
                 "--engine-url", engine_url, "--port", str(port)],
                cwd=REPO,
            )  # fmt: skip
            processes.append(process)
            relays[kind] = (f"http://127.0.0.1:{port}", process.pid)
        wait_http(engine_url + "/health")
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
        for url, _ in relays.values():
            wait_http(url + "/ping")
            await run_round(url + "/relay", {**body, "stream": True}, 4, gateway=True)  # warm
        results = []
        # 1 stream: many short rounds for TTFT; 16 and 64: fewer, each carries many streams.
        for streams, n in ((1, reps), (16, max(reps // 3, 2)), (64, max(reps // 3, 2))):
            results += await measure(engine_url, relays, streams, n)
        return {"results": results}
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(10)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| streams | relay | TTFT p50 added | TTFT p99 added | throughput ratio "
        "| largest gap (direct) | gap p99 | relay CPU / chunk |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['streams']} | {r['relay']} | {r['ttft_p50_added_ms']:+.2f} ms "
            f"| {r['ttft_p99_added_ms']:+.2f} ms | {r['throughput_ratio']:.3f} "
            f"| {r['max_gap_relay_ms']:.1f} ms ({r['max_gap_direct_ms']:.1f}) "
            f"| {r['gap_p99_relay_ms']:.1f} ms | {r['relay_cpu_us_per_chunk']:.0f} µs |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    relay = sub.add_parser("relay", help="serve one relay (started by the benchmark)")
    relay.add_argument("--client", choices=KINDS, required=True)
    relay.add_argument("--engine-url", required=True)
    relay.add_argument("--port", type=int, required=True)
    parser.add_argument("--reps", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.command == "relay":
        serve_relay(args.client, args.engine_url, args.port)
        return
    before = load_average()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report = asyncio.run(run(args.reps))
    after = load_average()
    report = {
        "machine": machine(),
        "date": started,
        "command": " ".join(["python -m bench.http_client_bench", *sys.argv[1:]]),
        "uptime_before": before,
        "uptime_after": after,
        "versions": _versions(),
        **report,
    }
    print(f"load before: {before}\nload after:  {after}")
    print(table(report["results"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("aiohttp", "httpx", "httpcore", "orjson", "uvicorn", "uvloop", "httptools")
    return {name: version(name) for name in names}


if __name__ == "__main__":
    main()
