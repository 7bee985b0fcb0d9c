"""``llm-api bench`` end to end, tiny: the fake engine, our gateway, every figure, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_api.cli import main
from llm_api.loadsim.command import allowed
from llm_api.settings import Settings


@pytest.fixture(autouse=True)
def _bench_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLM_API_DATA_DIR", str(tmp_path / "data"))


def test_a_tiny_sweep_against_the_fake_engine(tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = main(
        [
            "bench",
            "--users",
            "1,3",
            "--seconds",
            "1.5",
            "--slices",
            "1",
            "--think",
            "0.05",
            "--mix",
            "hebrew=2,english=1,extract=1,summary=1",
            "--delay",
            "0.005",
            "--reply-delay",
            "0.01",
            "--max-tokens",
            "16",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["sides"] == ["direct", "v1", "chat"]
    assert [level["users"] for level in sweep["levels"]] == [1, 3]
    for level in sweep["levels"]:
        for name, side in level["sides"].items():
            assert side["requests"] > 0, name
            assert side["errors"] == {}, name
            assert side["ttft_s"]["p50"] > 0, name
            assert side["tokens_per_s"] > 0, name
            if name != "direct":  # the gateway's CPU is read from /proc, per request and chunk
                assert side["cpu_ms_per_request"] > 0
                assert side["cpu_us_per_chunk"] > 0
            assert side["engine"]["running"]["max"] >= 0
    # Email work went to the email endpoints on the gateway's sides.
    top = sweep["levels"][-1]["sides"]
    assert sum(level["sides"]["chat"]["e2e_calls_s"]["n"] for level in sweep["levels"]) > 0
    assert top["chat"]["goodput"] > 0.5
    idle = sweep["memory"]["idle"]["gateway"]
    assert all(mib > 20 for mib in idle.values())
    assert sweep["memory"]["top"]["gateway"].keys() == idle.keys()
    assert sweep["machine"]["cores"] >= 1
    assert len(sweep["load_before"]) == 3
    for png in ("latency.png", "throughput.png", "difference.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    text = (out / "report.md").read_text()
    assert "| 3 | ours /api/chat/stream |" in text
    assert "![latency and goodput](latency.png)" in text


def test_traffic_only_to_loopback_or_configured_urls() -> None:
    settings = Settings(engine_url="http://gpu-box.internal:8060")
    assert allowed("http://127.0.0.1:8090/", settings, set()) == "http://127.0.0.1:8090"
    assert allowed("http://gpu-box.internal:8060", settings, set()).endswith(":8060")
    assert allowed("http://vllm.lan:8000", settings, {"vllm.lan"}) == "http://vllm.lan:8000"
    with pytest.raises(ValueError, match="only to loopback"):
        allowed("http://example.com/v1", settings, set())


def test_an_unknown_side_is_refused_before_anything_starts(tmp_path: Path) -> None:
    assert main(["bench", "--sides", "direct,ollama", "--out", str(tmp_path)]) == 1
    assert not (tmp_path / "sweep.json").exists()
