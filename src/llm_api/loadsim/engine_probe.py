"""The engine's own view of a run, from its Prometheus text: load, cache hits, memory.

vLLM and llama-server name the same things differently; each figure lists the names it
is read from and sums a name's samples over their labels (vLLM labels per engine and model).
A figure the engine does not export is simply absent from the report.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, field
from typing import Any

import aiohttp

GAUGES: dict[str, tuple[str, ...]] = {
    "running": ("vllm:num_requests_running", "llamacpp:requests_processing"),
    "waiting": ("vllm:num_requests_waiting", "llamacpp:requests_deferred"),
    "kv_cache_usage": (
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "llamacpp:kv_cache_usage_ratio",
    ),
    "resident_memory_bytes": ("process_resident_memory_bytes",),
}
COUNTERS: dict[str, tuple[str, ...]] = {
    "prefix_cache_queries": (
        "vllm:prefix_cache_queries_total",
        "vllm:gpu_prefix_cache_queries_total",
    ),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    "prompt_tokens": ("vllm:prompt_tokens_total", "llamacpp:prompt_tokens_total"),
    "generated_tokens": ("vllm:generation_tokens_total", "llamacpp:tokens_predicted_total"),
}
_NAMES = {name: figure for figure, names in (GAUGES | COUNTERS).items() for name in names}


def parse_metrics(text: str) -> dict[str, float]:
    """The figures above from Prometheus text (summed over labels; first name found wins)."""
    by_name: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in _NAMES:
            continue
        with contextlib.suppress(ValueError, IndexError):
            by_name[name] = by_name.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    figures: dict[str, float] = {}
    for figure, names in (GAUGES | COUNTERS).items():
        for name in names:
            if name in by_name:
                figures[figure] = by_name[name]
                break
    return figures


@dataclass
class EngineWatch:
    """Gauges sampled while a side runs, and the counters' rise over its slices."""

    gauges: dict[str, list[float]] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)

    def add_gauges(self, figures: dict[str, float]) -> None:
        for name in GAUGES:
            if name in figures:
                self.gauges.setdefault(name, []).append(figures[name])

    def add_rise(self, before: dict[str, float], after: dict[str, float]) -> None:
        for name in COUNTERS:
            if name in before and name in after:
                self.counters[name] = self.counters.get(name, 0.0) + after[name] - before[name]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: {"mean": statistics.fmean(values), "max": max(values)}
            for name, values in self.gauges.items()
            if values
        }
        out.update(self.counters)
        queries = self.counters.get("prefix_cache_queries")
        if queries:
            out["prefix_cache_hit_rate"] = self.counters.get("prefix_cache_hits", 0.0) / queries
        return out


async def read_metrics(http: aiohttp.ClientSession, engine_url: str) -> dict[str, float]:
    try:
        async with http.get(engine_url + "/metrics") as response:
            if response.status != 200:
                return {}
            return parse_metrics(await response.text())
    except (aiohttp.ClientError, TimeoutError):
        return {}
