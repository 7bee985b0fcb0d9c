"""What one request measured, and the figures a load level reports from many of them.

Pure functions over plain data, so that the figures the report prints can be checked in
unit tests: percentiles (nearest rank on the sorted values), goodput against a service-level
objective, and the memory-growth verdict of a soak.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Sample:
    """One request as the simulated person saw it. Times are seconds (perf_counter)."""

    kind: str  # "stream" (tokens arrive one by one) or "call" (one JSON answer)
    started: float
    ended: float = 0.0
    first_token: float | None = None  # when the first content arrived (streams)
    tokens: int = 0  # content events received (one per engine token on these engines)
    gaps: list[float] = field(default_factory=list)  # between consecutive content events
    error: str | None = None  # a kind: "http_503", "stream_error", "timeout", "connect", …

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.started

    @property
    def e2e(self) -> float:
        return self.ended - self.started

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first (None with fewer than two tokens)."""
        if self.first_token is None or self.tokens < 2:
            return None
        return (self.ended - self.first_token) / (self.tokens - 1)

    @property
    def max_gap(self) -> float:
        return max(self.gaps, default=0.0)


@dataclass(frozen=True, slots=True)
class Slo:
    """A request is good when it succeeded within these bounds (seconds)."""

    ttft: float = 2.0  # streams: time to the first token
    gap: float = 0.2  # streams: the longest wait between two tokens
    e2e: float = 30.0  # calls (email endpoints): the whole answer

    def met(self, sample: Sample) -> bool:
        if not sample.ok:
            return False
        if sample.kind == "call":
            return sample.e2e <= self.e2e
        ttft = sample.ttft
        return ttft is not None and ttft <= self.ttft and sample.max_gap <= self.gap

    @classmethod
    def parse(cls, text: str) -> Slo:
        """``ttft=2,gap=0.2,e2e=30`` (seconds; any subset)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep or name not in ("ttft", "gap", "e2e"):
                raise ValueError(f"SLO part {part!r}: expected ttft=…, gap=… or e2e=… (seconds)")
            values[name] = float(value)
        return cls(**values)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100); NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "n": float(len(values)),
    }


def summarize(samples: list[Sample], wall: float, slo: Slo) -> dict[str, Any]:
    """A load level's figures from its requests; ``wall`` is the level's measured seconds."""
    ok = [s for s in samples if s.ok]
    streams = [s for s in ok if s.kind == "stream"]
    ttfts = [t for s in streams if (t := s.ttft) is not None]
    tpots = [t for s in streams if (t := s.tpot) is not None]
    gaps = [g for s in streams for g in s.gaps]
    errors = Counter(s.error for s in samples if s.error is not None)
    good = sum(1 for s in samples if slo.met(s))
    tokens = sum(s.tokens for s in ok)
    return {
        "requests": len(samples),
        "ok": len(ok),
        "errors": dict(sorted(errors.items())),
        "error_rate": (len(samples) - len(ok)) / len(samples) if samples else 0.0,
        "goodput": good / len(samples) if samples else math.nan,
        "good_per_s": good / wall if wall > 0 else 0.0,
        "requests_per_s": len(ok) / wall if wall > 0 else 0.0,
        "tokens_per_s": tokens / wall if wall > 0 else 0.0,
        "tokens": tokens,
        "ttft_s": spread(ttfts),
        "gap_s": spread(gaps),
        "max_gap_s": max(gaps, default=math.nan),
        "tpot_s": spread(tpots),
        "e2e_s": spread([s.e2e for s in ok]),
        "e2e_calls_s": spread([s.e2e for s in ok if s.kind == "call"]),
        "wall_s": wall,
    }


@dataclass(frozen=True, slots=True)
class Growth:
    """Resident memory over a soak: growth beyond the noise band is a leak."""

    start_mib: float
    end_mib: float
    growth_mib: float  # the fitted line's rise over the measured window
    noise_mib: float  # three standard deviations of the samples around that line (≥ 1 MiB)
    leak: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "start_mib": self.start_mib,
            "end_mib": self.end_mib,
            "growth_mib": self.growth_mib,
            "noise_mib": self.noise_mib,
            "leak": self.leak,
        }


def memory_growth(times: list[float], mib: list[float], warmup: float = 0.1) -> Growth:
    """Fit a line to RSS samples after the first ``warmup`` share of the soak.

    The first minutes fill caches and pools (a real gateway's RSS rises, then flattens), so
    they are left out. A leak is a rise over the window that exceeds the band the samples
    wander in around the line: three standard deviations of the residuals, at least 1 MiB
    (the allocator hands memory back in pages and arenas, never byte by byte).
    """
    if len(times) != len(mib) or len(times) < 4:
        raise ValueError("need at least four (time, RSS) samples")
    skip = int(len(times) * warmup)
    xs, ys = times[skip:], mib[skip:]
    slope, intercept = statistics.linear_regression(xs, ys)
    residuals = [y - (slope * x + intercept) for x, y in zip(xs, ys, strict=True)]
    noise = max(3 * statistics.pstdev(residuals), 1.0)
    growth = slope * (xs[-1] - xs[0])
    return Growth(ys[0], ys[-1], growth, noise, growth > noise)


@dataclass(frozen=True, slots=True)
class CpuSplit:
    """A relay's CPU time split into a per-request and a per-chunk part (µs)."""

    per_request_us: float
    per_chunk_us: float


def split_cpu(short_us: float, short_chunks: float, long_us: float, long_chunks: float) -> CpuSplit:
    """From CPU per stream of short and long streams: cost = request + chunks × chunk.

    Two kinds of stream that differ only in their number of chunks give two equations:
    the slope is the cost of one chunk, and what is left of a stream's cost at zero chunks
    is the cost of the request.
    """
    if long_chunks <= short_chunks:
        raise ValueError("the long streams must carry more chunks than the short ones")
    per_chunk = (long_us - short_us) / (long_chunks - short_chunks)
    return CpuSplit(short_us - per_chunk * short_chunks, per_chunk)
