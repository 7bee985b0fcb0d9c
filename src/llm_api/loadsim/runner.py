"""The sweep and the soak: people on every side, interleaved, level after level.

Every level runs each side for the same time in ``slices`` turns, the order reversed on
every other turn (A B C, C B A, …), so that whatever else the machine does falls on all
sides alike and each figure can be read as a same-run ratio. While a side runs, the
gateway's CPU (``/proc`` schedstat of its processes), its workers' resident memory and the
engine's metrics are sampled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from llm_api.loadsim.engine_probe import EngineWatch, read_metrics
from llm_api.loadsim.people import Arm, Crowd, person
from llm_api.loadsim.prompts import Kind
from llm_api.loadsim.stats import Sample, Slo, memory_growth, summarize
from llm_api.loadsim.system import client_pauses_held, cpu_ns, rss_mib

Tick = Callable[[str, float], None]  # (what runs now, seconds done) for the progress bar


@dataclass(frozen=True)
class Load:
    """How the people behave."""

    mix: dict[Kind, float]
    think: float
    max_tokens: int
    long_max_tokens: int
    request_timeout: float
    seed: int


@dataclass
class SideRun:
    """One side at one level, over all its slices."""

    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    cpu_ns: int = 0
    engine: EngineWatch = field(default_factory=EngineWatch)
    rss_peak: dict[int, float] = field(default_factory=dict)
    rss_series: list[tuple[float, float]] = field(default_factory=list)  # (t, total MiB)

    def figures(self, slo: Slo) -> dict[str, Any]:
        out = summarize(self.samples, self.wall, slo)
        ok = out["ok"]
        if self.cpu_ns:
            out["cpu_ms_per_request"] = self.cpu_ns / 1e6 / ok if ok else None
            out["cpu_us_per_chunk"] = self.cpu_ns / 1e3 / out["tokens"] if out["tokens"] else None
            out["cpu_share_of_core"] = self.cpu_ns / 1e9 / self.wall if self.wall else None
        out["engine"] = self.engine.summary()
        if self.rss_peak:
            out["rss_peak_mib"] = {str(pid): mib for pid, mib in self.rss_peak.items()}
        return out


async def run_side(
    arm: Arm,
    *,
    users: int,
    seconds: float,
    load: Load,
    engine_url: str | None,
    side: SideRun,
    tick: Tick,
    rss_every: float = 0.5,
) -> None:
    """``users`` people on one side for ``seconds``; adds what they measured to ``side``."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=load.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        probe_http = http
        crowd = Crowd(
            http, load.mix, load.think, load.max_tokens, load.long_max_tokens, load.seed + users
        )
        before = await read_metrics(probe_http, engine_url) if engine_url else {}
        cpu_before = cpu_ns(list(arm.pids))
        start = time.perf_counter()
        deadline = start + seconds
        people = [asyncio.create_task(person(crowd, arm, i, deadline)) for i in range(users)]
        sampler = asyncio.create_task(
            _sample(
                arm,
                engine_url=engine_url,
                http=probe_http,
                side=side,
                start=start,
                deadline=deadline,
                tick=tick,
                rss_every=rss_every,
            )
        )
        try:
            await asyncio.gather(*people)
        finally:
            for task in people:
                task.cancel()
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        ended = max((s.ended for s in crowd.samples), default=time.perf_counter())
        side.cpu_ns += cpu_ns(list(arm.pids)) - cpu_before
        side.wall += max(ended, deadline) - start
        side.samples.extend(crowd.samples)
        if engine_url:
            side.engine.add_rise(before, await read_metrics(probe_http, engine_url))


async def _sample(
    arm: Arm,
    *,
    engine_url: str | None,
    http: aiohttp.ClientSession,
    side: SideRun,
    start: float,
    deadline: float,
    tick: Tick,
    rss_every: float,
) -> None:
    next_engine = start
    while True:
        now = time.perf_counter()
        tick(arm.name, min(now, deadline) - start)
        total = 0.0
        for pid in arm.pids:
            mib = rss_mib(pid)
            if mib is not None:
                total += mib
                side.rss_peak[pid] = max(side.rss_peak.get(pid, 0.0), mib)
        if arm.pids:
            side.rss_series.append((now, total))
        if engine_url and now >= next_engine:
            next_engine = now + 1.0
            side.engine.add_gauges(await read_metrics(http, engine_url))
        await asyncio.sleep(rss_every)


def slice_order(arms: list[Arm], turn: int) -> list[Arm]:
    """A B C on even turns, C B A on odd ones: a drift in the machine hits all sides alike."""
    return list(arms) if turn % 2 == 0 else list(reversed(arms))


async def sweep(
    arms: list[Arm],
    *,
    levels: list[int],
    seconds: float,
    slices: int,
    load: Load,
    slo: Slo,
    engine_url: str | None,
    tick: Callable[[str, float], None],
) -> list[dict[str, Any]]:
    """Every level, every side, ``seconds`` each in ``slices`` interleaved turns."""
    results = []
    done = 0.0
    for users in levels:
        sides = {arm.name: SideRun() for arm in arms}
        for turn in range(slices):
            for arm in slice_order(arms, turn):
                base = done

                def moved(
                    name: str, elapsed: float, base: float = base, users: int = users
                ) -> None:
                    tick(f"{users:>3} people · {name}", base + elapsed)

                with client_pauses_held():
                    await run_side(
                        arm,
                        users=users,
                        seconds=seconds / slices,
                        load=load,
                        engine_url=engine_url,
                        side=sides[arm.name],
                        tick=moved,
                    )
                done += seconds / slices
        results.append(
            {"users": users, "sides": {name: run.figures(slo) for name, run in sides.items()}}
        )
    return results


def idle_rss(arms: list[Arm]) -> dict[str, dict[str, float]]:
    seen: dict[str, dict[str, float]] = {}
    for arm in arms:
        for pid in arm.pids:
            mib = rss_mib(pid)
            if mib is not None:
                seen.setdefault(_process_name(arm), {})[str(pid)] = mib
    return seen


def _process_name(arm: Arm) -> str:
    return "gateway" if arm.name in ("v1", "chat") else arm.name


async def soak(
    arm: Arm,
    *,
    users: int,
    seconds: float,
    load: Load,
    slo: Slo,
    engine_url: str | None,
    tick: Tick,
) -> dict[str, Any]:
    """A steady load for ``seconds``; resident memory every 5 s, figures per minute."""
    side = SideRun()
    idle = {str(pid): rss_mib(pid) for pid in arm.pids}
    await run_side(
        arm,
        users=users,
        seconds=seconds,
        load=load,
        engine_url=engine_url,
        side=side,
        tick=tick,
        rss_every=5.0,
    )
    if not side.rss_series:
        raise RuntimeError("no resident-memory samples: the soak needs a gateway started here")
    t0 = side.rss_series[0][0]
    times = [t - t0 for t, _ in side.rss_series]
    mib = [m for _, m in side.rss_series]
    start = min((s.started for s in side.samples), default=t0)
    minutes: list[dict[str, Any]] = []
    for m in range(int(seconds // 60) or 1):
        window = [s for s in side.samples if m * 60 <= s.started - start < (m + 1) * 60]
        figures = summarize(window, 60.0, slo)
        minutes.append(
            {
                "minute": m + 1,
                "requests_per_s": figures["requests_per_s"],
                "ttft_p50_s": figures["ttft_s"]["p50"],
                "goodput": figures["goodput"],
                "errors": sum(figures["errors"].values()),
            }
        )
    return {
        "side": arm.name,
        "users": users,
        "seconds": seconds,
        "idle_rss_mib": idle,
        "rss_series": [[round(t, 1), round(v, 2)] for t, v in zip(times, mib, strict=True)],
        "growth": memory_growth(times, mib).as_dict(),
        "minutes": minutes,
        "figures": side.figures(slo),
    }
