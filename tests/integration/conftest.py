"""The real embedded engine: llama-server with the bundled Gemma 3 270M, once per session.

Every test marked ``engine`` that asks for ``real_engine_url`` shares one llama-server
started on a free loopback port, launched with the very command the supervisor uses.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_api.engine.launch import llama_server_command
from llm_api.settings import Settings
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
ENGINE_START_SECONDS = 180


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def real_engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    settings = Settings(
        vllm_port=port,
        data_dir=Path(os.environ.get("LLM_API_TEST_DATA_DIR", REPO / "data")),
        max_model_len=4096,
        max_tokens_cap=1024,
        engine_parallel=4,
        engine_threads=2,
    )
    command = llama_server_command(settings, "gemma-3-270m")
    log_path = tmp_path_factory.mktemp("engine") / "llama-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ENGINE_START_SECONDS
    try:
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"llama-server did not start (exit {process.poll()}):\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
