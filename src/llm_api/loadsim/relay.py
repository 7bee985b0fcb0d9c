"""The relay's cost, as same-run ratios: direct, the bare-Python floor, ours, LiteLLM.

Against the fake engine (64 chunks, 20 ms apart), each relay with one worker, all sides
interleaved — request by request at 1 stream, round by round at 64 and 256:

* 1 stream: time to first token (p50), added over direct.
* 64 streams: p99 TTFT, chunk throughput, CPU per chunk; and the same rounds with streams
  of one chunk (``max_tokens: 1``), which split each relay's CPU into a part per request
  and a part per chunk (:func:`~llm_api.loadsim.stats.split_cpu`).
* 256 streams: the largest gap between two chunks of one stream.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from llm_api.loadsim.people import Arm, Crowd, stream_turn
from llm_api.loadsim.stats import Sample, percentile, split_cpu
from llm_api.loadsim.system import client_pauses_held, cpu_ns

LONG, SHORT = 64, 1
MESSAGES = [{"role": "user", "content": "שלום! ספר לי משהו על ירושלים."}]


@dataclass
class Scenario:
    samples: list[Sample] = field(default_factory=list)
    throughputs: list[float] = field(default_factory=list)
    cpu_ns: int = 0
    streams: int = 0

    @property
    def chunks(self) -> int:
        return sum(s.tokens for s in self.samples)


def body(arm: Arm, max_tokens: int) -> tuple[dict[str, Any], str]:
    if arm.route == "chat":
        return {"messages": MESSAGES, "stream": True, "max_tokens": max_tokens}, "/api/chat/stream"
    return (
        {"model": arm.model, "messages": MESSAGES, "stream": True, "max_tokens": max_tokens},
        "/v1/chat/completions",
    )


async def _round(crowd: Crowd, arm: Arm, streams: int, max_tokens: int, into: Scenario) -> None:
    payload, path = body(arm, max_tokens)
    before = cpu_ns(list(arm.pids))
    start = time.perf_counter()
    results = await asyncio.gather(
        *(stream_turn(crowd, arm, payload, path) for _ in range(streams))
    )
    wall = time.perf_counter() - start
    into.cpu_ns += cpu_ns(list(arm.pids)) - before
    samples = [r[0] for r in results]
    into.samples.extend(samples)
    into.streams += streams
    into.throughputs.append(sum(s.tokens for s in samples) / wall)


def _turns(arms: list[Arm], i: int) -> list[Arm]:
    k = i % len(arms)
    return arms[k:] + arms[:k]


async def measure(
    arms: list[Arm], single: int, rounds: int, tick: Callable[[str, float], None]
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    plan: list[tuple[str, int, int, int]] = [("1 stream", 1, LONG, single)]
    plan += [("64 streams", 64, LONG, rounds), ("64 short streams", 64, SHORT, rounds)]
    plan += [("256 streams", 256, LONG, rounds)]
    steps = sum(n for *_, n in plan) * len(arms)
    scenarios: dict[str, dict[str, Scenario]] = {}
    done = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        crowd = Crowd(http, {}, 0.0, LONG, LONG, 0)
        for arm in arms:  # warm every path: pools, model lookups, first-request imports
            payload, path = body(arm, LONG)
            await asyncio.gather(*(stream_turn(crowd, arm, payload, path) for _ in range(8)))
        for name, streams, max_tokens, repeats in plan:
            sides = {arm.name: Scenario() for arm in arms}
            for i in range(repeats):
                for arm in _turns(arms, i):
                    tick(f"{name} · {arm.name}", done / steps)
                    with client_pauses_held():
                        await _round(crowd, arm, streams, max_tokens, sides[arm.name])
                    done += 1
            scenarios[name] = sides
    tick("done", 1.0)
    return figures(arms, scenarios)


def figures(arms: list[Arm], scenarios: dict[str, dict[str, Scenario]]) -> dict[str, Any]:
    one, s64, short, s256 = (
        scenarios[k] for k in ("1 stream", "64 streams", "64 short streams", "256 streams")
    )
    errors = {
        scenario: {side: sum(1 for s in run.samples if not s.ok) for side, run in sides.items()}
        for scenario, sides in scenarios.items()
    }

    def ttft(run: Scenario, q: float) -> float:
        return percentile([t for s in run.samples if (t := s.ttft) is not None], q) * 1e3

    sides: dict[str, dict[str, Any]] = {}
    for arm in arms:
        n = arm.name
        side: dict[str, Any] = {
            "ttft_p50_ms_1": ttft(one[n], 50),
            "ttft_p99_ms_64": ttft(s64[n], 99),
            "throughput_chunks_per_s_64": statistics.fmean(s64[n].throughputs),
            "max_gap_ms_256": max((s.max_gap for s in s256[n].samples), default=0.0) * 1e3,
        }
        if arm.pids:
            side["cpu_us_per_chunk_1"] = one[n].cpu_ns / 1e3 / max(one[n].chunks, 1)
            side["cpu_us_per_chunk_64"] = s64[n].cpu_ns / 1e3 / max(s64[n].chunks, 1)
            side["cpu_us_per_chunk_256"] = s256[n].cpu_ns / 1e3 / max(s256[n].chunks, 1)
            split = split_cpu(
                short[n].cpu_ns / 1e3 / short[n].streams,
                short[n].chunks / short[n].streams,
                s64[n].cpu_ns / 1e3 / s64[n].streams,
                s64[n].chunks / s64[n].streams,
            )
            side["cpu_ms_per_request_64"] = split.per_request_us / 1e3
            side["cpu_us_per_chunk_split_64"] = split.per_chunk_us
        sides[n] = side
    return {"sides": sides, "errors": errors, "ratios": ratios(sides)}


def ratios(sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's figures, each against its reference side of the same run."""
    out: dict[str, Any] = {}
    direct = sides.get("direct")
    floor = sides.get("floor")
    litellm = sides.get("litellm")
    for ours in ("v1", "chat"):
        side = sides.get(ours)
        if side is None:
            continue
        figures: dict[str, Any] = {}
        if direct is not None:
            figures["added_ttft_ms_1"] = side["ttft_p50_ms_1"] - direct["ttft_p50_ms_1"]
            figures["throughput_vs_direct_64"] = (
                side["throughput_chunks_per_s_64"] / direct["throughput_chunks_per_s_64"]
            )
        if floor is not None:
            figures["added_cpu_ms_per_request_over_floor"] = (
                side["cpu_ms_per_request_64"] - floor["cpu_ms_per_request_64"]
            )
            figures["added_cpu_us_per_chunk_over_floor"] = (
                side["cpu_us_per_chunk_split_64"] - floor["cpu_us_per_chunk_split_64"]
            )
            figures["throughput_vs_floor_64"] = (
                side["throughput_chunks_per_s_64"] / floor["throughput_chunks_per_s_64"]
            )
            figures["max_gap_vs_floor_256"] = side["max_gap_ms_256"] / floor["max_gap_ms_256"]
        if litellm is not None and direct is not None:
            ours_added = side["ttft_p50_ms_1"] - direct["ttft_p50_ms_1"]
            theirs_added = litellm["ttft_p50_ms_1"] - direct["ttft_p50_ms_1"]
            figures["litellm_added_ttft_ms_1"] = theirs_added
            figures["added_ttft_x_less_than_litellm_1"] = (
                theirs_added / ours_added if ours_added > 0 else float("inf")
            )
            figures["throughput_x_litellm_64"] = (
                side["throughput_chunks_per_s_64"] / litellm["throughput_chunks_per_s_64"]
            )
            figures["cpu_per_chunk_x_less_than_litellm_64"] = (
                litellm["cpu_us_per_chunk_64"] / side["cpu_us_per_chunk_64"]
            )
        out[ours] = figures
    if floor is not None and direct is not None:
        out["floor"] = {
            "added_ttft_ms_1": floor["ttft_p50_ms_1"] - direct["ttft_p50_ms_1"],
            "throughput_vs_direct_64": floor["throughput_chunks_per_s_64"]
            / direct["throughput_chunks_per_s_64"],
        }
    return out


TARGETS: tuple[tuple[str, str, float], ...] = (
    ("added_cpu_ms_per_request_over_floor", "<=", 0.2),
    ("added_cpu_us_per_chunk_over_floor", "<=", 10.0),
    ("throughput_vs_floor_64", ">=", 0.99),
    ("max_gap_vs_floor_256", "<=", 1.2),
    ("added_ttft_x_less_than_litellm_1", ">=", 10.0),
    ("throughput_x_litellm_64", ">=", 3.0),
    ("cpu_per_chunk_x_less_than_litellm_64", ">=", 20.0),
)


def verdicts(figures: dict[str, Any]) -> list[tuple[str, str, float, float | None, bool | None]]:
    """(figure, sense, target, ours on /v1, met) for the issue's targets."""
    ours = figures.get("v1", {})
    rows: list[tuple[str, str, float, float | None, bool | None]] = []
    for name, sense, target in TARGETS:
        value = ours.get(name)
        met = None if value is None else (value <= target if sense == "<=" else value >= target)
        rows.append((name, sense, target, value, met))
    return rows
