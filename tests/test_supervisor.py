"""``llm-api serve`` as a user runs it: real processes, real ports, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]


def serve(env: dict[str, str], output: IO[str] | int = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "llm_api.cli", "serve"],
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def wait_for(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_unreachable_external_engine_exits_non_zero() -> None:
    process = serve(
        {
            "LLM_API_ENGINE_URL": f"http://127.0.0.1:{free_port()}",
            "LLM_API_PORT": str(free_port()),
            "LLM_API_ENGINE_START_TIMEOUT": "2",
        }
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "did not become healthy" in output
    assert "LLM_API_ENGINE_URL" in output


def test_engine_that_fails_to_start_is_reported_with_its_log() -> None:
    failing = f"{sys.executable} -c \"print('vllm: no CUDA device found'); raise SystemExit(3)\""
    process = serve(
        {
            "LLM_API_ENGINE": "vllm",
            "LLM_API_VLLM_COMMAND": failing,
            "LLM_API_PORT": str(free_port()),
            "LLM_API_VLLM_PORT": str(free_port()),
            "LLM_API_DATA_DIR": str(REPO / "data" / "test-supervisor"),
        }
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "engine exited with code 3" in output
    assert "no CUDA device found" in output
    assert "raise SystemExit(3)" in output  # the command it ran


def test_port_in_use_is_a_clear_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve({"LLM_API_PORT": str(port), "LLM_API_HOST": "127.0.0.1"})
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"port {port} is already in use" in output
    assert "LLM_API_PORT" in output


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    api_port, engine_port = free_port(), free_port()
    output = (tmp_path / "serve.log").open("w")
    process = serve(
        {
            "LLM_API_PORT": str(api_port),
            "LLM_API_HOST": "127.0.0.1",
            "LLM_API_VLLM_PORT": str(engine_port),
            "LLM_API_ENGINE": "llamacpp",
            "LLM_API_MAX_MODEL_LEN": "2048",
            "LLM_API_MAX_TOKENS_CAP": "512",
            "LLM_API_DEFAULT_MAX_TOKENS": "256",
            "LLM_API_ENGINE_PARALLEL": "2",
        },
        output,
    )
    try:
        yield process, api_port, engine_port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close()


@pytest.mark.engine
def test_serve_starts_engine_and_gateway_and_stops_both_on_sigterm(
    supervised: tuple[subprocess.Popen[str], int, int],
) -> None:
    process, api_port, engine_port = supervised
    api = f"http://127.0.0.1:{api_port}"
    assert wait_for(lambda: get(api + "/api/health") == 200, 180), "the API never became healthy"
    children = psutil.Process(process.pid).children(recursive=True)
    assert any("llama-server" in " ".join(c.cmdline()) for c in children)

    # The engine dies: health turns unhealthy, the supervisor restarts it, no gateway restart.
    gateway_pids = {c.pid for c in children if "uvicorn" in " ".join(c.cmdline())}
    engine = next(c for c in children if "llama-server" in " ".join(c.cmdline()))
    engine.kill()
    assert wait_for(lambda: get(api + "/api/health") == 503, 30)
    assert wait_for(lambda: get(api + "/api/health") == 200, 120), "engine was not restarted"
    now = psutil.Process(process.pid).children(recursive=True)
    assert gateway_pids <= {c.pid for c in now}

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode == 0
    everything = children + now
    assert wait_for(lambda: not any(c.is_running() for c in everything), 10), "orphans left"
    assert get(api + "/ping") == 0
    assert get(f"http://127.0.0.1:{engine_port}/health") == 0
