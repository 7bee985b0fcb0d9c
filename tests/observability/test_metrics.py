"""``/metrics``, ``/api/metrics``, request ids and JSON access logs, on one in-process gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine
from tests.sse import stream_events

HEBREW = "שלום, מה נשמע?"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0.0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


@pytest.fixture
async def observed(fake_engine: FakeEngine, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = gateway_settings(
        fake_engine.url, data_dir=tmp_path, request_log_flush_seconds=0.1, log_format="json"
    )
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


async def test_prometheus_counts_requests_streams_tokens_and_latencies(
    observed: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    before = (await observed.get("/metrics")).text
    fake_engine.state.chunk_delay = 0.02
    route = "/v1/chat/completions"
    body = {"model": "default", "messages": [{"role": "user", "content": HEBREW}]}
    assert (await observed.post(route, json=body)).status_code == 200
    async with observed.stream("POST", route, json={**body, "stream": True}) as response:
        await response.aread()
    assert (await observed.post(route, json={**body, "model": "nope"})).status_code == 404
    response, _ = await stream_events(observed, {"messages": [{"role": "user", "content": HEBREW}]})
    assert response.status_code == 200

    metrics = await observed.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text

    def delta(name: str, **labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert delta("llm_api_requests_total", route=route, method="POST", status="200") == 2
    assert delta("llm_api_requests_total", route=route, method="POST", status="404") == 1
    assert delta("llm_api_requests_total", route="/api/chat/stream", status="200") == 1
    assert delta("llm_api_time_to_first_token_seconds_count", route=route) == 1
    assert delta("llm_api_time_to_first_token_seconds_count", route="/api/chat/stream") == 1
    # The relay passes on what arrived together in one write, so the gaps counted are the
    # ones the client sees: content chunks 2..8 each come 20 ms after the one before (7
    # gaps at least); role, finish, usage and [DONE] may ride along (11 gaps at most).
    gaps = delta("llm_api_inter_token_gap_seconds_count", route=route)
    assert 7 <= gaps <= 11
    assert delta("llm_api_inter_token_gap_seconds_sum", route=route) >= 7 * 0.02 * 0.9
    assert delta("llm_api_request_duration_seconds_count", route=route) == 3
    # Fake engine usage: 10 prompt tokens; 5 completion (non-stream) + 8 (stream).
    assert delta("llm_api_prompt_tokens_total", route=route) == 20
    assert delta("llm_api_completion_tokens_total", route=route) == 13
    assert delta("llm_api_completion_tokens_total", route="/api/chat/stream") == 8
    assert sample(text, "llm_api_streams_in_flight", route=route) == 0


async def test_engine_errors_and_503_rejections_are_counted(
    observed: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    before = (await observed.get("/metrics")).text
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    fake_engine.state.fail_status = 503
    assert (await observed.post("/v1/chat/completions", json=body)).status_code == 503
    fake_engine.state.fail_status = None
    fake_engine.state.error_after = 1
    async with observed.stream("POST", "/v1/chat/completions", json=body) as response:
        await response.aread()
    text = (await observed.get("/metrics")).text

    def delta(name: str, **labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    route = "/v1/chat/completions"
    assert delta("llm_api_rejections_total", route=route, status="503") == 1
    assert (
        delta("llm_api_engine_errors_total", type="engine_unavailable", phase="before_first_byte")
        == 1
    )
    assert delta("llm_api_engine_errors_total", type="engine_bad_response", phase="in_stream") == 1


async def test_request_id_is_accepted_generated_and_echoed(
    observed: httpx.AsyncClient,
) -> None:
    mine = await observed.get("/ping", headers={"X-Request-ID": "req-42.abc_DEF:1"})
    assert mine.headers["x-request-id"] == "req-42.abc_DEF:1"
    for bad in ("has space", "x" * 200, "עברית", "-leading-dash"):
        response = await observed.get("/ping", headers={b"X-Request-ID": bad.encode()})
        assert response.headers["x-request-id"] != bad
        assert len(response.headers["x-request-id"]) == 32
    one, two = await observed.get("/ping"), await observed.get("/ping")
    assert one.headers["x-request-id"] != two.headers["x-request-id"]
    error = await observed.post("/v1/chat/completions", json={"model": "x"})
    assert len(error.headers["x-request-id"]) == 32


async def test_json_access_log_has_metadata_and_no_content(
    fake_engine: FakeEngine, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = gateway_settings(fake_engine.url, data_dir=tmp_path, log_format="json")
    secret = "סוד גדול: הסיסמה היא 1234"
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        capfd.readouterr()
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "default", "messages": [{"role": "user", "content": secret}]},
            headers={"X-Request-ID": "trace-me-1"},
        )
        assert response.status_code == 200
    err = capfd.readouterr().err
    assert secret not in err
    assert "1234" not in err
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [e for e in lines if e.get("logger") == "llm_api.access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "trace-me-1"
    assert entry["route"] == "/v1/chat/completions"
    assert entry["status"] == 200
    assert entry["level"] == "info"
    assert entry["prompt_tokens"] == 10
    assert entry["completion_tokens"] == 5
    assert entry["latency_ms"] > 0
    assert "key_name" in entry
    assert entry["key_name"] is None  # no API keys yet
    assert entry["time"].endswith("+00:00")


async def test_api_metrics_shape_and_figures(
    observed: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        assert (await observed.post("/v1/chat/completions", json=body)).status_code == 200
    fake_engine.state.fail_status = 500
    assert (await observed.post("/v1/chat/completions", json=body)).status_code == 502
    fake_engine.state.fail_status = None
    response, _ = await stream_events(observed, {"messages": [{"role": "user", "content": "hi"}]})
    session = response.headers["x-session-id"]
    assert (await observed.get("/ping")).status_code == 200  # not an API request
    assert (await observed.get("/api/health")).status_code == 200  # monitoring: not counted

    got = await observed.get("/api/metrics")
    assert got.status_code == 200
    data = got.json()
    assert set(data) >= {
        "active_sessions",
        "total_requests_24h",
        "average_response_time",
        "error_rate",
        "uptime",
        "resource_usage",
        "uptime_seconds",
    }
    assert data["total_requests_24h"] == 5
    assert data["error_rate"] == pytest.approx(1 / 5)
    assert 0 < data["average_response_time"] < 5
    assert data["active_sessions"] == 1, session
    assert data["uptime"] == 100.0  # the health sampler's first probe found the engine up
    assert data["uptime_seconds"] > 0
    usage = data["resource_usage"]
    assert usage["memory"].endswith("GB")
    assert float(usage["memory"][:-2]) > 0
    assert usage["gpu_memory"] is None  # no GPU on this machine
    assert 0 <= usage["cpu_percent"] <= 100


async def test_uptime_counts_failed_health_samples(fake_engine: FakeEngine, tmp_path: Path) -> None:
    fake_engine.state.healthy = False
    settings = gateway_settings(
        fake_engine.url, data_dir=tmp_path, health_sample_seconds=0.1, request_log_flush_seconds=0.1
    )
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        await asyncio.sleep(0.35)
        fake_engine.state.healthy = True
        await asyncio.sleep(0.35)
        uptime = (await http.get("/api/metrics")).json()["uptime"]
    assert 20 < uptime < 80


async def test_context_truncations_are_counted(fake_engine: FakeEngine, tmp_path: Path) -> None:
    fake_engine.state.chunks = [" ".join(["תשובה"] * 10)]
    settings = gateway_settings(
        fake_engine.url,
        data_dir=tmp_path,
        max_model_len=400,
        max_tokens_cap=100,
        default_max_tokens=100,
    )
    truncated_turns = 0
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        before = (await http.get("/metrics")).text
        for turn in range(12):
            text = f"שאלה {turn} " + " ".join(["מילה"] * 10)
            _, events = await stream_events(
                http,
                {"messages": [{"role": "user", "content": text}], "session_id": "chat_obs_0001"},
            )
            truncated_turns += bool(events[-1].get("truncated_messages"))
        after = (await http.get("/metrics")).text
    assert truncated_turns > 0
    counted = sample(after, "llm_api_context_truncations_total", feature="chat") - sample(
        before, "llm_api_context_truncations_total", feature="chat"
    )
    assert counted == truncated_turns


async def test_in_stream_errors_count_in_error_rate(
    observed: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    chat = {"messages": [{"role": "user", "content": HEBREW}]}
    response, events = await stream_events(observed, chat)
    assert events[-1]["type"] == "done"
    fake_engine.state.error_after = 2
    response, events = await stream_events(observed, chat)
    assert response.status_code == 200
    assert events[-1]["type"] == "error"
    body = {"model": "default", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with observed.stream("POST", "/v1/chat/completions", json=body) as streamed:
        assert b'"error"' in await streamed.aread()
    fake_engine.state.error_after = None
    assert (await observed.post("/v1/chat/completions", json={**body, "stream": False})).is_success

    data = (await observed.get("/api/metrics")).json()
    assert data["total_requests_24h"] == 4
    assert data["error_rate"] == pytest.approx(2 / 4)


async def test_non_streaming_chat_records_tokens(
    observed: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.state.chunks = ["א", "ב", "ג"]
    before = (await observed.get("/metrics")).text
    response = await observed.post(
        "/api/chat/stream",
        json={"messages": [{"role": "user", "content": HEBREW}], "stream": False},
    )
    assert response.status_code == 200
    after = (await observed.get("/metrics")).text
    name, route = "llm_api_completion_tokens_total", "/api/chat/stream"
    assert sample(after, name, route=route) - sample(before, name, route=route) == 3
