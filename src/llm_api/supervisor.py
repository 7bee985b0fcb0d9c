"""``llm-api serve``: start the engine, wait for it, start the gateway, stop both cleanly.

The supervisor is the only place that spawns engines. It keeps the engine alive: if the
engine dies while the gateway runs, the gateway answers 503 and the supervisor starts
the engine again, so recovery needs no gateway restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import IO

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from llm_api.engine.launch import Deployment, EnginePlan, EngineSetupError, plan_deployment
from llm_api.observability.metrics import fresh_multiprocess_dir
from llm_api.settings import Settings

_STOP_GRACE_SECONDS = 15.0
_POLL_SECONDS = 0.5
_RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


class Mode(StrEnum):
    DEFAULT = "default"
    DEV = "dev"
    PROD = "prod"


class StartupError(Exception):
    """Start-up cannot go on; the message says what to do."""


def port_in_use(host: str, port: int) -> bool:
    bind_host = "" if host in {"0.0.0.0", "::"} else host  # noqa: S104 - probing, not serving
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind_host, port))
        except OSError:
            return True
    return False


def engine_is_healthy(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as response:  # noqa: S310 - our own engine URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except OSError:
        return ""


class EngineProcess:
    """One launched engine process, in its own process group, logging to a file."""

    def __init__(self, plan: EnginePlan, log_path: Path) -> None:
        assert plan.command is not None  # noqa: S101 - only launched plans get here
        self.plan = plan
        self.command = plan.command
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes] = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(  # noqa: S603 - command built from settings, no shell
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.plan.env},
                start_new_session=True,
            )
        except OSError as exc:
            raise StartupError(
                f"could not start the engine ({exc.strerror}); command: {self.command_line}"
            ) from None
        finally:
            log.close()

    @property
    def command_line(self) -> str:
        return " ".join(self.command)

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()

    def failure_report(self, what: str) -> str:
        return (
            f"{what}\n  command: {self.command_line}\n  log: {self.log_path}\n"
            f"  last lines of the log:\n{_indent(tail(self.log_path))}"
        )


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _indent(text: str) -> str:
    return "".join("    " + line for line in text.splitlines(keepends=True)) or "    (empty)\n"


class Supervisor:
    def __init__(self, settings: Settings, mode: Mode, console: Console | None = None) -> None:
        self.settings = settings
        self.mode = mode
        self.console = console or Console(stderr=True)
        self.engines: list[EngineProcess] = []
        self.gateway: subprocess.Popen[bytes] | None = None
        self._metrics_dir: Path | None = None
        self._stop = threading.Event()

    # --- entry point --------------------------------------------------------------------
    def run(self) -> int:
        previous = self._install_signal_handlers()
        try:
            return self._run()
        except (StartupError, EngineSetupError) as exc:
            self.console.print(f"[bold red]error:[/] {exc}", highlight=False)
            return 1
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        self._apply_security_defaults()
        settings = self.settings
        if port_in_use(settings.host, settings.port):
            raise StartupError(
                f"port {settings.port} is already in use; stop what runs there "
                "or choose another with LLM_API_PORT"
            )
        with self.console.status("preparing the engine (first run assembles the model)…"):
            deployment = plan_deployment(settings)
        logs = settings.data_dir / "logs"
        launched = list(deployment.engines) + ([deployment.router] if deployment.router else [])
        for index, plan in enumerate(launched):
            port = int(plan.url.rsplit(":", 1)[1])
            if port_in_use("127.0.0.1", port):
                raise StartupError(
                    f"engine port {port} is already in use; stop what runs "
                    "there, choose another with LLM_API_VLLM_PORT, or use it as an external "
                    "engine with LLM_API_ENGINE_URL"
                )
            if plan is deployment.router:
                name = "router.log"
            elif len(deployment.engines) > 1:
                name = f"engine-{index + 1}.log"
            else:
                name = "engine.log"
            self.engines.append(EngineProcess(plan, logs / name))
        for process in self.engines:
            what = "router" if process.plan is deployment.router else f"engine [bold]{plan.kind}[/]"
            self.console.print(f"starting {what}: {process.command_line}", highlight=False)
            process.start()
            # The router waits for its workers itself; engines start side by side.
        if not all(self._wait_for_engine(p.plan, p) for p in self.engines) or (
            not self.engines and not self._wait_for_engine(deployment.front, None)
        ):
            return 1
        self._start_gateway(deployment)
        self._announce(deployment.front)
        return self._watch()

    # --- steps --------------------------------------------------------------------------
    def _apply_security_defaults(self) -> None:
        """Mode decides the auth default; open access stays on loopback unless told otherwise."""
        from llm_api.auth.keys import active_key_count  # noqa: PLC0415 - SQL stack only here
        from llm_api.settings import RunMode  # noqa: PLC0415 - next to its only use

        self.settings = self.settings.model_copy(update={"mode": RunMode(self.mode.value)})
        if self.settings.auth_required:
            if active_key_count(self.settings) == 0:
                raise StartupError(
                    "API keys are required (LLM_API_AUTH=required, the default in prod) and "
                    "none is defined; create one with:\n  llm-api keys create --name NAME "
                    "--scopes chat,email,admin\nor the first admin (signs in from the browser):"
                    "\n  llm-api users create NAME --admin\nor set LLM_API_AUTH=disabled"
                )
            return
        if "host" not in self.settings.model_fields_set and self.mode is not Mode.PROD:
            self.settings = self.settings.model_copy(update={"host": "127.0.0.1"})
            self.console.print(
                "[yellow]warning:[/] API keys are not checked (LLM_API_AUTH=disabled), so the "
                "gateway listens on 127.0.0.1 only; set LLM_API_HOST to serve other machines "
                "(and create keys: llm-api keys create --name NAME)",
                highlight=False,
            )
        else:
            self.console.print(
                f"[yellow]warning:[/] API keys are not checked (LLM_API_AUTH=disabled) and the "
                f"gateway listens on {self.settings.host}",
                highlight=False,
            )

    def _wait_for_engine(self, plan: EnginePlan, process: EngineProcess | None) -> bool:
        # An external engine should already be up: give it a short grace, not minutes.
        timeout = self.settings.engine_start_timeout
        if not plan.launches:
            timeout = min(timeout, 30.0)
        deadline = time.monotonic() + timeout
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as progress:
            progress.add_task(f"waiting for the {plan.kind} engine at {plan.url}", total=None)
            while not self._stop.is_set():
                if engine_is_healthy(plan.url, self.settings.health_check_timeout):
                    self.console.print(f"[green]engine ready[/] at {plan.url}")
                    return True
                if process is not None and (code := process.exit_code()) is not None:
                    self.console.print(
                        process.failure_report(f"[red]engine exited with code {code}[/]"),
                        highlight=False,
                    )
                    return False
                if time.monotonic() > deadline:
                    break
                self._stop.wait(_POLL_SECONDS)
        if self._stop.is_set():
            return False
        what = f"the engine at {plan.url} did not become healthy within {timeout:.0f} s"
        if process is not None:
            self.console.print(process.failure_report(f"[red]{what}[/]"), highlight=False)
        else:
            self.console.print(f"[red]{what}[/]; check LLM_API_ENGINE_URL", highlight=False)
        return False

    def _start_gateway(self, deployment: Deployment) -> None:
        settings = self.settings
        plan = deployment.front
        command = [
            sys.executable, "-m", "uvicorn", "llm_api.app:create_app", "--factory",
            "--host", settings.host, "--port", str(settings.port),
            "--timeout-graceful-shutdown", "10",
            "--log-level", settings.log_level.lower(),
        ]  # fmt: skip
        if self.mode is Mode.DEV:
            src = Path(__file__).resolve().parent
            command += ["--reload", "--reload-dir", str(src)]
        elif self.mode is Mode.PROD:
            command += ["--workers", str(settings.workers), "--no-server-header"]
        env = {
            **os.environ,
            "LLM_API_ENGINE_URL": plan.url,
            "LLM_API_ENGINE": plan.kind.value,
            "LLM_API_MODE": self.mode.value,  # the gateway's auth and docs defaults follow it
            **{k: v for k, v in deployment.gateway_env.items() if k not in os.environ},
        }
        if self.mode is Mode.PROD:
            # Several workers: Prometheus counters go through files that /metrics merges.
            self._metrics_dir = fresh_multiprocess_dir(settings.data_dir / "prometheus-multiproc")
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self._metrics_dir)
        if plan.model_name:
            env["LLM_API_MODEL_NAME"] = plan.model_name
        self.gateway = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env)  # noqa: S603

    def _announce(self, plan: EnginePlan) -> None:
        shown = "localhost" if self.settings.host in {"0.0.0.0", "::"} else self.settings.host  # noqa: S104
        base = f"http://{shown}:{self.settings.port}"
        self.console.print(
            f"[bold green]PLG-AI LLM API[/] ({self.mode} mode)\n"
            f"  API:     {base}   (health: {base}/api/health, docs: {base}/docs)\n"
            f"  engine:  {plan.kind} at {plan.url}"
            + (f"   (logs: {self.engines[0].log_path.parent})" if self.engines else "")
            + "\n  stop:    Ctrl-C",
            highlight=False,
        )

    def _watch(self) -> int:
        restarts = 0
        while not self._stop.is_set():
            gateway_code = self.gateway.poll() if self.gateway else None
            if gateway_code is not None:
                self.console.print(f"[red]the gateway exited with code {gateway_code}[/]")
                return gateway_code or 1
            dead = next((p for p in self.engines if p.exit_code() is not None), None)
            if dead is not None:
                # One replica down: the router sends its conversations to the others
                # meanwhile, and takes it back once it is healthy (docs/REPLICAS.md).
                self.console.print(
                    dead.failure_report(
                        f"[red]{dead.log_path.stem} exited with code {dead.exit_code()}; "
                        "restarting it[/]"
                    ),
                    highlight=False,
                )
                backoff = _RESTART_BACKOFF_SECONDS[min(restarts, len(_RESTART_BACKOFF_SECONDS) - 1)]
                restarts += 1
                if self._stop.wait(backoff):
                    break
                dead.start()
                if self._wait_for_engine(dead.plan, dead):
                    restarts = 0
                continue
            self._stop.wait(_POLL_SECONDS)
        return 0

    # --- stopping -----------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[signal.Signals, Callable[..., object] | int | None]:
        def on_signal(signum: int, _: FrameType | None) -> None:
            self._stop.set()

        previous: dict[signal.Signals, Callable[..., object] | int | None] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, on_signal)
        return previous

    def shutdown(self) -> None:
        """Gateway first (it finishes open streams), then the engine; no orphans."""
        if self.gateway is not None and self.gateway.poll() is None:
            self.gateway.send_signal(signal.SIGTERM)
            try:
                self.gateway.wait(_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
                self.gateway.wait()
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            self._metrics_dir = None
        # The router first (it holds no state), then the engines, side by side.
        for process in reversed(self.engines):
            process.stop()
