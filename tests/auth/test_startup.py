"""Start-up rules: prod requires a key; open access stays on loopback; the mode reaches workers."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys

import httpx
import pytest
from rich.console import Console

from llm_api.settings import Settings
from llm_api.supervisor import Mode, StartupError, Supervisor
from tests.auth.conftest import bearer, make_key
from tests.conftest import free_port, wait_for_ping
from tests.fakes import FakeEngine


def _supervisor(settings: Settings, mode: Mode) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    return Supervisor(settings, mode, Console(file=out, width=200)), out


def test_open_access_binds_loopback_and_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_API_HOST", raising=False)
    for mode in (Mode.DEFAULT, Mode.DEV):
        supervisor, out = _supervisor(Settings(), mode)
        supervisor._apply_security_defaults()
        assert supervisor.settings.host == "127.0.0.1"
        assert not supervisor.settings.auth_required
        assert "LLM_API_AUTH=disabled" in out.getvalue()
    # prod with keys explicitly off keeps its address (the operator chose), with the warning.
    supervisor, out = _supervisor(Settings(auth="disabled"), Mode.PROD)
    supervisor._apply_security_defaults()
    assert supervisor.settings.host == "0.0.0.0"
    assert "LLM_API_AUTH=disabled" in out.getvalue()
    monkeypatch.setenv("LLM_API_HOST", "0.0.0.0")
    supervisor, out = _supervisor(Settings(), Mode.DEFAULT)
    supervisor._apply_security_defaults()
    assert supervisor.settings.host == "0.0.0.0"
    assert "listens on 0.0.0.0" in out.getvalue()


async def test_prod_without_a_key_refuses_with_the_command() -> None:
    supervisor, _ = _supervisor(Settings(), Mode.PROD)
    with pytest.raises(StartupError, match="llm-api keys create --name"):
        await asyncio.to_thread(supervisor._apply_security_defaults)
    settings = Settings()
    await make_key(settings, "ops")
    supervisor, _ = _supervisor(settings, Mode.PROD)
    await asyncio.to_thread(supervisor._apply_security_defaults)
    assert supervisor.settings.auth_required
    assert supervisor.settings.host == settings.host  # prod keeps the configured address


async def test_prod_serve_exits_non_zero_without_a_key() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_api.cli", "serve", "prod",
        env={**os.environ, "COLUMNS": "200", "LLM_API_PORT": str(free_port())},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert b"llm-api keys create --name NAME" in output


async def test_prod_gateway_requires_keys_and_hides_docs(fake_engine: FakeEngine) -> None:
    settings = Settings()
    key = await make_key(settings, "ops", "chat,admin")
    port = free_port()
    env = {
        **os.environ,
        "LLM_API_ENGINE_URL": fake_engine.url,
        "LLM_API_PORT": str(port),
        "LLM_API_HOST": "127.0.0.1",
        "LLM_API_WORKERS": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_api.cli", "serve", "prod",
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        await wait_for_ping(f"http://127.0.0.1:{port}", process, "the supervisor")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/api/sessions")).status_code == 401
            assert (await http.get("/api/sessions", headers=bearer(key))).status_code == 200
            assert (await http.get("/docs")).status_code == 404
            assert (await http.get("/openapi.json")).status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
