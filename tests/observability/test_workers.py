"""Two uvicorn workers, as ``./start-api.sh prod`` runs them: totals add up, survive restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from llm_api.observability.metrics import fresh_multiprocess_dir
from tests.conftest import uvicorn_workers
from tests.fakes import FakeEngine
from tests.observability.test_metrics import sample


@asynccontextmanager
async def two_workers(engine_url: str, data_dir: Path) -> AsyncIterator[tuple[str, Path]]:
    metrics_dir = fresh_multiprocess_dir(data_dir / "prometheus-multiproc")
    env = {
        "LLM_API_ENGINE_URL": engine_url,
        "LLM_API_DATA_DIR": str(data_dir),
        "LLM_API_REQUEST_LOG_FLUSH_SECONDS": "0.2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    async with uvicorn_workers(env) as url:
        yield url, metrics_dir


def worker_pids_with_counters(metrics_dir: Path) -> set[str]:
    return {p.stem.split("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}


async def one_request(url: str, index: int) -> int:
    # A new connection each time, so that the kernel can hand it to either worker.
    async with httpx.AsyncClient(base_url=url, headers={"Connection": "close"}) as http:
        body = {"model": "default", "messages": [{"role": "user", "content": f"שאלה {index}"}]}
        if index % 2:
            async with http.stream(
                "POST", "/v1/chat/completions", json={**body, "stream": True}
            ) as response:
                await response.aread()
        else:
            response = await http.post("/v1/chat/completions", json=body)
        return response.status_code


async def test_two_workers_report_the_same_totals_and_keep_them_across_restart(
    fake_engine: FakeEngine, tmp_path: Path
) -> None:
    sent = 0
    async with two_workers(fake_engine.url, tmp_path) as (url, metrics_dir):
        # Send until both workers have served some (the kernel picks), at least 20 in all.
        while sent < 20 or len(worker_pids_with_counters(metrics_dir)) < 2:
            assert sent < 400, "one worker never got a connection"
            statuses = await asyncio.gather(*(one_request(url, sent + i) for i in range(8)))
            assert statuses == [200] * 8
            sent += 8
        await asyncio.sleep(0.6)  # both workers flush their request-log buffers
        async with httpx.AsyncClient(base_url=url, headers={"Connection": "close"}) as http:
            answers = [(await http.get("/api/metrics")).json() for _ in range(6)]
            prometheus = (await http.get("/metrics")).text
    assert {a["total_requests_24h"] for a in answers} == {sent}
    assert {a["error_rate"] for a in answers} == {0.0}
    route = "/v1/chat/completions"
    merged = sample(prometheus, "llm_api_requests_total", route=route, status="200")
    assert merged == sent
    assert sample(prometheus, "llm_api_time_to_first_token_seconds_count", route=route) == (
        sent // 2
    )

    async with (
        two_workers(fake_engine.url, tmp_path) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
    ):
        after_restart = (await http.get("/api/metrics")).json()
    assert after_restart["total_requests_24h"] == sent
    assert after_restart["uptime_seconds"] < answers[0]["uptime_seconds"] + 60
