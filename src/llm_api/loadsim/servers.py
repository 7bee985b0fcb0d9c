"""The processes a run starts: the fake or embedded engine, our gateway, the floor, LiteLLM.

Each runs in its own process group on loopback and is stopped (SIGTERM, then SIGKILL) when
the run ends, however it ends. LiteLLM's proxy is installed once into its own virtual
environment under the cache folder (it pins its own FastAPI, pydantic and uvicorn, so it
never shares ours).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LITELLM_VERSION = "1.108.7"

# The relay is what is measured, not the admission limits (256 people would meet the
# engine gate's 503s) nor the rate limit: lifted, as the relay benchmarks always did.
GATEWAY_ENV = {
    "LLM_API_LOG_LEVEL": "WARNING",
    "LLM_API_CONNECTION_POOL_SIZE": "1024",
    "LLM_API_MAX_CONCURRENT_REQUESTS": "4096",
    "LLM_API_MAX_QUEUE": "4096",
    "LLM_API_MAX_STREAMS_PER_KEY": "4096",
    "LLM_API_RATE_LIMIT_RPM": "10000000",
    "LLM_API_AUTH": "disabled",
}


class StartError(Exception):
    """A process the run needs did not start; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Processes:
    """Every process of a run, stopped in reverse order by :meth:`stop_all`."""

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="llm-api-bench-")))
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> int:
        log: IO[bytes] = (self.folder / f"{name}.log").open("ab")
        try:
            process = subprocess.Popen(  # noqa: S603 - our own commands, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # its own group: stopped with all its children
            )
        finally:
            log.close()
        self.started.append((name, process))
        return process.pid

    def wait_up(self, name: str, url: str, timeout: float = 180.0) -> None:
        process = dict(self.started)[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StartError(f"{name} exited with {process.returncode}; {self.log_tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise StartError(f"{name} did not answer {url} in {timeout:.0f} s; {self.log_tail(name)}")

    def log_tail(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        with contextlib.suppress(OSError):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            return f"log {path}:\n" + "\n".join(lines)
        return f"log {path}: (none)"

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self.started):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.started.clear()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def fake_engine_command(port: int, chunks: int, delay: float, reply_delay: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llm_api.loadsim.fake_engine",
        "--port",
        str(port),
        "--chunks",
        str(chunks),
        "--delay",
        str(delay),
        "--reply-delay",
        str(reply_delay),
    ]


def uvicorn_command(app: str, port: int, workers: int = 1) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--backlog",
        "4096",
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    return command


def gateway_env(engine_url: str, data_dir: Path, workers: int, titles: bool) -> dict[str, str]:
    env = {
        **GATEWAY_ENV,
        "LLM_API_ENGINE_URL": engine_url,
        "LLM_API_DATA_DIR": str(data_dir),
        "LLM_API_CHAT_TITLES": "true" if titles else "false",
    }
    if workers > 1:  # several workers share their Prometheus counters through files
        metrics = data_dir / "prometheus"
        metrics.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    return env


# --- LiteLLM ----------------------------------------------------------------------------
def litellm_home() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "plg-llm-api" / f"litellm-{LITELLM_VERSION}"


def ensure_litellm(say: Callable[[str], object] = print) -> Path:
    """LiteLLM's proxy in its own virtual environment (installed once, then reused).

    Installed in place (a venv's scripts name its interpreter by absolute path, so it
    cannot be moved once made); a marker file written last tells a finished install from
    an interrupted one, which is removed and made again.
    """
    home = litellm_home()
    binary = home / "venv" / "bin" / "litellm"
    marker = home / "installed"
    if marker.exists() and binary.exists():
        return binary
    say(f"installing litellm[proxy]=={LITELLM_VERSION} into {home} (once)")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    venv = home / "venv"
    requirement = f"litellm[proxy]=={LITELLM_VERSION}"
    uv = shutil.which("uv") or _project_uv()
    if uv:
        commands = [
            [uv, "venv", "-q", "--python", sys.executable, str(venv)],
            [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), requirement],
        ]
    else:
        commands = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", requirement],
        ]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed commands
        if done.returncode != 0:
            raise StartError(
                f"installing LiteLLM failed: {' '.join(command)}\n{done.stderr[-2000:]}"
            )
    marker.write_text(LITELLM_VERSION + "\n")
    return binary


def _project_uv() -> str | None:
    """The uv that start-api.sh installed into the project's .tools, if any."""
    for parent in Path(sys.executable).parents:
        candidate = parent / ".tools" / "bin" / "uv"
        if candidate.exists():
            return str(candidate)
    return None


def litellm_version(binary: Path) -> str:
    python = binary.parent / "python"
    done = subprocess.run(  # noqa: S603 - the venv's own interpreter
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or LITELLM_VERSION


def litellm_config(folder: Path, engine_url: str, model: str) -> Path:
    path = folder / "litellm.yaml"
    path.write_text(
        "model_list:\n"
        f"  - model_name: {model}\n"
        "    litellm_params:\n"
        f"      model: openai/{model}\n"
        f"      api_base: {engine_url}/v1\n"
        "      api_key: none\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    return path


def litellm_command(binary: Path, config: Path, port: int) -> tuple[list[str], dict[str, str]]:
    env = {
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
    }
    command = [
        str(binary),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    return command, env
