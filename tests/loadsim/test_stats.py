"""The simulator's statistics: the figures the report prints, checked on known samples."""

from __future__ import annotations

import math
import random

import pytest

from llm_api.loadsim.engine_probe import EngineWatch, parse_metrics
from llm_api.loadsim.people import Arm
from llm_api.loadsim.prompts import EMAILS, draw, email_prompt, parse_mix
from llm_api.loadsim.relay import Scenario, figures, verdicts
from llm_api.loadsim.runner import slice_order
from llm_api.loadsim.stats import Sample, Slo, memory_growth, percentile, split_cpu, summarize


def stream(start: float, ttft: float, gaps: list[float], error: str | None = None) -> Sample:
    sample = Sample("stream", start, first_token=start + ttft, tokens=len(gaps) + 1)
    sample.gaps = list(gaps)
    sample.ended = start + ttft + sum(gaps)
    sample.error = error
    return sample


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1 … 100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_sample_figures() -> None:
    s = stream(10.0, 0.5, [0.1, 0.1, 0.3])
    assert s.ttft == pytest.approx(0.5)
    assert s.e2e == pytest.approx(1.0)
    assert s.tpot == pytest.approx(0.5 / 3)  # (end - first token) / (tokens - 1)
    assert s.max_gap == pytest.approx(0.3)
    one = stream(0.0, 0.2, [])
    assert one.tpot is None


def test_summary_of_a_level() -> None:
    slo = Slo(ttft=1.0, gap=0.2, e2e=5.0)
    good = [stream(float(i), 0.1 * (i + 1), [0.05] * 9) for i in range(8)]  # TTFT 0.1 … 0.8
    slow = stream(20.0, 1.5, [0.05] * 9)  # TTFT over the SLO
    stalled = stream(21.0, 0.1, [0.05, 0.5])  # one gap over the SLO
    failed = Sample("stream", 22.0, ended=22.1, error="http_503")
    broken = stream(23.0, 0.1, [0.05], error="stream_error")
    email = Sample("call", 24.0, ended=26.0, tokens=1)
    late_email = Sample("call", 25.0, ended=31.0, tokens=1)
    samples = [*good, slow, stalled, failed, broken, email, late_email]
    out = summarize(samples, wall=10.0, slo=slo)
    assert out["requests"] == 14
    assert out["ok"] == 12
    assert out["errors"] == {"http_503": 1, "stream_error": 1}
    assert out["error_rate"] == pytest.approx(2 / 14)
    # Good: the eight quick streams and the email within 5 s.
    assert out["goodput"] == pytest.approx(9 / 14)
    assert out["good_per_s"] == pytest.approx(0.9)
    assert out["requests_per_s"] == pytest.approx(1.2)
    assert out["tokens"] == 8 * 10 + 10 + 3 + 2
    assert out["tokens_per_s"] == pytest.approx(9.5)
    # TTFT over the ten successful streams: 0.1 … 0.8, 1.5, 0.1.
    assert out["ttft_s"]["n"] == 10
    assert out["ttft_s"]["p50"] == pytest.approx(0.4)
    assert out["ttft_s"]["p99"] == pytest.approx(1.5)
    assert out["max_gap_s"] == pytest.approx(0.5)
    assert out["e2e_calls_s"]["p50"] == pytest.approx(2.0)


def test_slo_parsing() -> None:
    assert Slo.parse("ttft=2,gap=0.2") == Slo(ttft=2.0, gap=0.2, e2e=30.0)
    assert Slo.parse("e2e=10") == Slo(e2e=10.0)
    with pytest.raises(ValueError, match="ttft"):
        Slo.parse("latency=3")


def test_a_flat_soak_is_no_leak() -> None:
    rng = random.Random(7)
    times = [5.0 * i for i in range(120)]  # 10 minutes, every 5 s
    mib = [150.0 + rng.uniform(-0.8, 0.8) for _ in times]
    growth = memory_growth(times, mib)
    assert not growth.leak
    assert abs(growth.growth_mib) < growth.noise_mib


def test_a_steady_rise_is_a_leak() -> None:
    rng = random.Random(7)
    times = [5.0 * i for i in range(120)]
    mib = [150.0 + 0.02 * t + rng.uniform(-0.8, 0.8) for t in times]  # 12 MiB in 10 min
    growth = memory_growth(times, mib)
    assert growth.leak
    assert growth.growth_mib == pytest.approx(0.02 * (times[-1] - times[12]), rel=0.1)


def test_a_warm_up_rise_then_flat_is_no_leak() -> None:
    times = [5.0 * i for i in range(120)]
    mib = [120.0 + min(t, 25.0) for t in times]  # caches fill in the first 25 s, then flat
    assert not memory_growth(times, mib).leak


def test_cpu_split_into_request_and_chunk() -> None:
    # 300 µs per request and 20 µs per chunk: streams of 1 and of 64 chunks.
    split = split_cpu(300 + 20 * 1, 1, 300 + 20 * 64, 64)
    assert split.per_request_us == pytest.approx(300)
    assert split.per_chunk_us == pytest.approx(20)
    with pytest.raises(ValueError, match="more chunks"):
        split_cpu(1, 5, 2, 5)


def test_engine_metrics_of_both_kinds() -> None:
    vllm = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
        'vllm:num_requests_running{engine="1",model_name="m"} 2.0\n'
        'vllm:num_requests_waiting{engine="0",model_name="m"} 4.0\n'
        'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0\n'
        'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 250.0\n'
        "process_resident_memory_bytes 2.5e9\n"
    )
    assert parse_metrics(vllm) == {
        "running": 5.0,
        "waiting": 4.0,
        "prefix_cache_queries": 1000.0,
        "prefix_cache_hits": 250.0,
        "resident_memory_bytes": 2.5e9,
    }
    llama = "llamacpp:requests_processing 2\nllamacpp:requests_deferred 1\n"
    assert parse_metrics(llama) == {"running": 2.0, "waiting": 1.0}
    watch = EngineWatch()
    watch.add_gauges({"running": 2.0})
    watch.add_gauges({"running": 4.0})
    watch.add_rise(
        {"prefix_cache_queries": 100.0, "prefix_cache_hits": 10.0},
        {"prefix_cache_queries": 300.0, "prefix_cache_hits": 110.0},
    )
    summary = watch.summary()
    assert summary["running"] == {"mean": 3.0, "max": 4.0}
    assert summary["prefix_cache_hit_rate"] == pytest.approx(0.5)


def test_mix_and_prompts_are_hebrew_first() -> None:
    assert parse_mix("hebrew=6,english=2,extract=1,summary=1") == {
        "hebrew": 0.6,
        "english": 0.2,
        "extract": 0.1,
        "summary": 0.1,
    }
    with pytest.raises(ValueError, match="KIND"):
        parse_mix("klingon=1")
    rng = random.Random(3)
    works = [draw({"hebrew": 1.0}, rng) for _ in range(20)]
    assert all(w.language == "hebrew" and len(w.turns) >= 2 for w in works)
    assert any("ירושלים" in turn for w in works for turn in w.turns)
    assert email_prompt("extract", EMAILS[0]).startswith("חלץ את המשימות")


def test_sides_alternate_order_every_turn() -> None:
    arms = [Arm(n, "http://127.0.0.1:1", "openai", "m") for n in ("direct", "v1", "chat")]
    assert [a.name for a in slice_order(arms, 0)] == ["direct", "v1", "chat"]
    assert [a.name for a in slice_order(arms, 1)] == ["chat", "v1", "direct"]


def _scenario(ttft: float, gap: float, chunks: int, streams: int, cpu_us: float) -> Scenario:
    run = Scenario(cpu_ns=round(cpu_us * 1e3 * streams), streams=streams)
    run.samples = [stream(0.0, ttft, [gap] * (chunks - 1)) for _ in range(streams)]
    run.throughputs = [streams * chunks / (ttft + gap * (chunks - 1))]
    return run


def test_relay_ratios_against_the_floor_and_litellm() -> None:
    arms = [
        Arm("direct", "http://127.0.0.1:1", "openai", "m"),
        Arm("floor", "http://127.0.0.1:2", "openai", "m", (1,)),
        Arm("v1", "http://127.0.0.1:3", "openai", "m", (2,)),
        Arm("litellm", "http://127.0.0.1:4", "openai", "m", (3,)),
    ]
    # Per stream: floor 100 µs + 20 µs a chunk; ours 250 µs + 25; LiteLLM 5 ms + 500.
    costs = {"direct": (0.0, 0.0), "floor": (100, 20), "v1": (250, 25), "litellm": (5000, 500)}
    ttfts = {"direct": 0.001, "floor": 0.002, "v1": 0.0025, "litellm": 0.02}
    scenarios = {
        name: {
            a.name: _scenario(
                ttfts[a.name], 0.02, chunks, streams, costs[a.name][0] + costs[a.name][1] * chunks
            )
            for a in arms
        }
        for name, chunks, streams in (
            ("1 stream", 64, 1),
            ("64 streams", 64, 64),
            ("64 short streams", 1, 64),
            ("256 streams", 64, 256),
        )
    }
    out = figures(arms, scenarios)
    v1 = out["ratios"]["v1"]
    assert v1["added_cpu_ms_per_request_over_floor"] == pytest.approx(0.15)
    assert v1["added_cpu_us_per_chunk_over_floor"] == pytest.approx(5.0)
    assert v1["added_ttft_ms_1"] == pytest.approx(1.5)
    assert v1["added_ttft_x_less_than_litellm_1"] == pytest.approx(19 / 1.5)
    assert v1["cpu_per_chunk_x_less_than_litellm_64"] == pytest.approx(
        (5000 / 64 + 500) / (250 / 64 + 25)
    )
    met = {name: ok for name, _, _, _, ok in verdicts(out["ratios"])}
    assert met["added_cpu_ms_per_request_over_floor"] is True
    assert met["added_cpu_us_per_chunk_over_floor"] is True
