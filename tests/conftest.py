"""Shared fixtures: a fake engine on loopback and the real gateway served by uvicorn."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from llm_api.app import create_app
from llm_api.settings import Settings
from tests.fakes import FakeEngine, FakeEngineState, running_fake_engine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve_gateway(settings: Settings) -> AsyncIterator[str]:
    """Run the real app under uvicorn on a free loopback port, in this event loop."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def gateway_settings(engine_url: str, **overrides: Any) -> Settings:
    # Background title calls would add requests to the fake engine's log that tests of other
    # features do not expect; tests of titles turn them on (chat_titles=True).
    values: dict[str, Any] = {
        "engine_url": engine_url,
        "health_check_timeout": 1.0,
        "chat_titles": False,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's gateway keeps its conversation store (SQLite file) in its own folder."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LLM_API_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture
async def fake_engine() -> AsyncIterator[FakeEngine]:
    async with running_fake_engine(FakeEngineState()) as engine:
        yield engine


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def gateway(fake_engine: FakeEngine) -> AsyncIterator[str]:
    async with serve_gateway(gateway_settings(fake_engine.url)) as url:
        yield url


@pytest.fixture
async def client(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        yield http
