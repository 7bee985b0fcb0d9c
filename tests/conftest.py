"""Shared fixtures: a fake engine on loopback and the real gateway served by uvicorn."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
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


REPO = Path(__file__).resolve().parents[1]


async def wait_for_ping(
    url: str, process: asyncio.subprocess.Process, what: str = "uvicorn"
) -> None:
    """Poll ``/ping`` until it answers 200; fail at once if the process has exited."""
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(300):
            try:
                if (await http.get("/ping")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert process.returncode is None, f"{what} exited"
            await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not answer /ping at {url}")


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


@asynccontextmanager
async def uvicorn_workers(env_extra: dict[str, str], workers: int = 2) -> AsyncIterator[str]:
    """The gateway as ``prod`` runs it: a uvicorn process with several workers."""
    port = free_port()
    env = {**os.environ, "LLM_API_LOG_LEVEL": "WARNING", **env_extra}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "llm_api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--timeout-graceful-shutdown", "2",
        cwd=REPO, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_for_ping(url, process)
        yield url
    finally:
        await stop_process(process)


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
