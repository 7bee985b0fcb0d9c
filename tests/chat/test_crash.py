"""Gateway processes: kill -9 mid-stream then restart; several starting on a fresh store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from tests.chat.conftest import pg_admin
from tests.conftest import free_port
from tests.fakes import FakeEngine

HEBREW = "ספר לי סיפור ארוך על הים התיכון"


@contextmanager
def gateway_process(env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "llm_api.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=url) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail("gateway exited:\n" + _tail(log))
            try:
                if (await client.get("/ping")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail("gateway did not start:\n" + _tail(log))


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_kill_9_mid_stream_then_restart_recovers(
    fake_engine: FakeEngine, tmp_path: Path, postgres_url: str, database: str
) -> None:
    state = fake_engine.state
    state.chunks = [f"גל{i} " for i in range(500)]
    state.chunk_delay = 0.02
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "LLM_API_ENGINE_URL": fake_engine.url,
        "LLM_API_DATA_DIR": str(tmp_path / "data"),
        "LLM_API_CHAT_TITLES": "false",
        # The text so far is written every 0.2 s; a lease lasts 1 s.
        "LLM_API_CHAT_FLUSH_SECONDS": "0.2",
    }
    if database == "postgresql":
        env["LLM_API_DATABASE_URL"] = postgres_url
    session_id = f"chat_crash_{database}_{uuid.uuid4().hex[:8]}"
    full = "".join(state.chunks)

    with gateway_process(env, port, log) as process:
        await wait_ready(url, process, log)
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as client,
            client.stream(
                "POST",
                "/api/chat/stream",
                json={"messages": [{"role": "user", "content": HEBREW}], "session_id": session_id},
            ) as response,
        ):
            assert response.status_code == 200
            seen = 0
            flushed = ""
            async for line in response.aiter_lines():
                if line.startswith("data:") and orjson.loads(line[5:])["type"] == "content":
                    seen += 1
                    if seen % 10 == 0 and not flushed:
                        # What the server has written of the reply so far, mid-stream.
                        reply = (await client.get(f"/api/sessions/{session_id}")).json()
                        flushed = reply["messages"][-1]["content"]
                    if flushed and seen >= 40:
                        os.kill(process.pid, signal.SIGKILL)
                        break
        assert flushed, "no text was written while the reply streamed"
        assert process.wait(10) == -signal.SIGKILL

    state.chunks, state.chunk_delay = ["המשך"], 0.0
    with gateway_process(env, port, log) as process:
        await wait_ready(url, process, log)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            # At start-up, or by the sweep once its lease has run out, the reply of the
            # dead process becomes interrupted, keeping the text of the last write.
            deadline = time.monotonic() + 15
            while True:
                body = (await client.get(f"/api/sessions/{session_id}")).json()
                if body["messages"][-1]["status"] != "streaming":
                    break
                assert time.monotonic() < deadline, "the crashed reply stayed streaming"
                await asyncio.sleep(0.1)
            (user_row, reply) = [(m["role"], m["content"], m["status"]) for m in body["messages"]]
            assert user_row == ("user", HEBREW, "complete")
            assert reply[0::2] == ("assistant", "interrupted")
            # Everything written before the kill is kept: at least what was seen mid-stream,
            # whole deltas, the start of the reply the engine was sending.
            assert reply[1].startswith(flushed)
            assert full.startswith(reply[1])
            assert reply[1].endswith(" ")
            # The conversation goes on after the crash.
            follow = await client.post(
                "/api/chat/stream",
                json={"messages": [{"role": "user", "content": "ומה הלאה?"}],
                      "session_id": session_id},
            )  # fmt: skip
            assert follow.status_code == 200
            body = (await client.get(f"/api/sessions/{session_id}")).json()
            assert [m["status"] for m in body["messages"]] == [
                "complete", "interrupted", "complete", "complete",
            ]  # fmt: skip


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_workers_starting_together_on_a_fresh_store_all_serve(
    fake_engine: FakeEngine, tmp_path: Path, database: str
) -> None:
    env = {
        **os.environ,
        "LLM_API_ENGINE_URL": fake_engine.url,
        "LLM_API_DATA_DIR": str(tmp_path / "data"),
        "LLM_API_CHAT_TITLES": "false",
    }
    fresh = f"llm_api_workers_{uuid.uuid4().hex[:10]}"
    if database == "postgresql":
        await pg_admin(f'CREATE DATABASE "{fresh}"')
        env["LLM_API_DATABASE_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{fresh}"
    ports = [free_port() for _ in range(3)]
    log = tmp_path / "gateways.log"
    try:
        with ExitStack() as stack:
            processes = [stack.enter_context(gateway_process(env, p, log)) for p in ports]
            for port, process in zip(ports, processes, strict=True):
                await wait_ready(f"http://127.0.0.1:{port}", process, log)
            for i, port in enumerate(ports):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    response = await client.post(
                        "/api/chat/stream",
                        json={"messages": [{"role": "user", "content": f"שלום {i}"}],
                              "session_id": f"chat_worker_{i:04d}"},
                    )  # fmt: skip
                    assert response.status_code == 200
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}") as client:
                listed = (await client.get("/api/sessions")).json()["sessions"]
            assert sorted(s["session_id"] for s in listed) == [
                f"chat_worker_{i:04d}" for i in range(3)
            ]
    finally:
        if database == "postgresql":
            await pg_admin(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
