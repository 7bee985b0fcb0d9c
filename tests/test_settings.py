"""Settings: the seed's defaults, and one clear line for every bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llm_api.settings import EngineKind, SettingsError, load_settings


def test_seed_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLM_API_PORT", "LLM_API_ENGINE", "LLM_API_ENGINE_URL", "LLM_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.host, settings.port, settings.vllm_port) == ("0.0.0.0", 8090, 8060)
    assert settings.request_timeout == 300
    assert settings.health_check_timeout == 5
    assert settings.connection_pool_size == 100
    assert settings.max_keepalive_connections == 50
    assert settings.keepalive_expiry == 60.0
    assert settings.engine is EngineKind.AUTO
    assert settings.engine_base_url == "http://127.0.0.1:8060"


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_API_PORT", "9001")
    monkeypatch.setenv("LLM_API_ENGINE", "vllm")
    monkeypatch.setenv("LLM_API_ENGINE_URL", "http://10.1.2.3:8000/")
    settings = load_settings()
    assert settings.port == 9001
    assert settings.engine is EngineKind.VLLM
    assert settings.engine_base_url == "http://10.1.2.3:8000"


def test_seed_base_url_with_v1_is_understood(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_API_ENGINE_URL", raising=False)
    monkeypatch.setenv("LLM_API_BASE_URL", "http://gpu-box:8060/v1")
    assert load_settings().engine_base_url == "http://gpu-box:8060"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("LLM_API_PORT", "abc", "LLM_API_PORT"),
        ("LLM_API_PORT", "70000", "LLM_API_PORT"),
        ("LLM_API_ENGINE", "tensorflow", "LLM_API_ENGINE"),
        ("LLM_API_MODEL_PATH", "/nonexistent/model.gguf", "no model file"),
        ("LLM_API_ENGINE_URL", "not a url", "LLM_API_ENGINE_URL"),
        ("LLM_API_LOG_LEVEL", "LOUD", "LLM_API_LOG_LEVEL"),
        ("LLM_API_REQUEST_TIMEOUT", "-1", "LLM_API_REQUEST_TIMEOUT"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_cli_prints_one_line_and_exits_2_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llm_api.cli", "serve"],
        env={"LLM_API_PORT": "abc", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "LLM_API_PORT" in result.stderr
    assert "Traceback" not in result.stderr
