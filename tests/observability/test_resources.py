"""GPU memory for ``/api/metrics`` through NVML, with a fake ``pynvml`` (no GPU here).

The fake stands in for the ``nvidia-ml-py`` module only: what NVML answers on a GPU box
(two devices, a missing driver library, a device that stops answering) is played back,
and the real formatting and error handling run on it.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from llm_api.observability.resources import GpuMemory, GpuProbe, Resources, read_resources
from llm_api.observability.service import MetricsSnapshot, snapshot_body
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine

GIB = 1024**3


class FakeNVMLError(Exception):
    pass


class FakeLibraryNotFound(FakeNVMLError):
    """As ``pynvml.NVMLError_LibraryNotFound``: the driver's libnvidia-ml.so is absent."""


@dataclass
class MemoryInfo:
    used: int
    total: int


@dataclass
class FakeNVML:
    devices: list[MemoryInfo]
    init_error: type[Exception] | None = None
    fail_memory_info: bool = False
    calls: list[str] = field(default_factory=list)

    def module(self) -> types.ModuleType:
        module = types.ModuleType("pynvml")
        module.NVMLError = FakeNVMLError  # type: ignore[attr-defined]  # a fake module
        module.nvmlInit = self.init  # type: ignore[attr-defined]
        module.nvmlShutdown = self.shutdown  # type: ignore[attr-defined]
        module.nvmlDeviceGetCount = self.count  # type: ignore[attr-defined]
        module.nvmlDeviceGetHandleByIndex = self.handle  # type: ignore[attr-defined]
        module.nvmlDeviceGetMemoryInfo = self.memory_info  # type: ignore[attr-defined]
        return module

    def init(self) -> None:
        self.calls.append("init")
        if self.init_error is not None:
            raise self.init_error("NVML Shared Library Not Found")

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def count(self) -> int:
        return len(self.devices)

    def handle(self, index: int) -> int:
        return index

    def memory_info(self, handle: int) -> MemoryInfo:
        if self.fail_memory_info:
            raise FakeNVMLError("GPU is lost")
        return self.devices[handle]


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> FakeNVML:
    nvml = FakeNVML(
        [
            MemoryInfo(used=int(6.2 * GIB), total=24 * GIB),
            MemoryInfo(used=int(6.2 * GIB), total=24 * GIB),
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", nvml.module())
    return nvml


def _usage(gpu: GpuMemory | None) -> dict[str, object]:
    resources = Resources(
        memory_used=12 * GIB, memory_total=31 * GIB, memory_percent=38.7, cpu_percent=5.0, gpu=gpu
    )
    snapshot = MetricsSnapshot(
        active_sessions=0,
        total_requests_24h=0,
        average_response_time=None,
        error_rate=None,
        uptime=None,
        uptime_seconds=1.0,
        resources=resources,
        timestamp=datetime.now(UTC),
    )
    usage = snapshot_body(snapshot)["resource_usage"]
    assert isinstance(usage, dict)
    return usage


def test_gpu_memory_is_summed_over_devices_and_formatted(two_gpus: FakeNVML) -> None:
    probe = GpuProbe()
    gpu = probe.memory()
    assert gpu == GpuMemory(used=2 * int(6.2 * GIB), total=48 * GIB, devices=2)
    usage = _usage(gpu)
    assert usage["gpu_memory"] == "12.4GB"
    assert usage["gpu_memory_total"] == "48.0GB"
    assert usage["gpu_count"] == 2
    probe.memory()
    assert two_gpus.calls == ["init"]  # initialised once, not per call
    probe.close()
    assert two_gpus.calls == ["init", "shutdown"]


def test_no_gpu_gives_null_figures() -> None:
    usage = _usage(None)
    assert usage["gpu_memory"] is None
    assert usage["gpu_memory_total"] is None
    assert usage["gpu_count"] == 0


def test_missing_driver_library_gives_null_and_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = FakeNVML([MemoryInfo(used=1, total=2)], init_error=FakeLibraryNotFound)
    monkeypatch.setitem(sys.modules, "pynvml", nvml.module())
    probe = GpuProbe()
    assert probe.memory() is None
    assert probe.memory() is None
    assert nvml.calls == ["init"]
    probe.close()
    assert nvml.calls == ["init"]  # nothing to shut down


def test_missing_nvidia_ml_py_gives_null(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    probe = GpuProbe()
    assert probe.memory() is None
    assert read_resources(probe).gpu is None
    probe.close()


def test_no_device_gives_null_and_shuts_nvml_down(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNVML([])
    monkeypatch.setitem(sys.modules, "pynvml", nvml.module())
    probe = GpuProbe()
    assert probe.memory() is None
    assert nvml.calls == ["init", "shutdown"]


def test_a_device_that_stops_answering_gives_null_then_recovers(two_gpus: FakeNVML) -> None:
    probe = GpuProbe()
    assert probe.memory() is not None
    two_gpus.fail_memory_info = True
    assert probe.memory() is None
    two_gpus.fail_memory_info = False
    assert probe.memory() == GpuMemory(used=2 * int(6.2 * GIB), total=48 * GIB, devices=2)


async def test_api_metrics_reports_gpu_memory(
    two_gpus: FakeNVML, fake_engine: FakeEngine, tmp_path: Path
) -> None:
    settings = gateway_settings(fake_engine.url, data_dir=tmp_path)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        usage = (await http.get("/api/metrics")).json()["resource_usage"]
    assert usage["gpu_memory"] == "12.4GB"
    assert usage["gpu_memory_total"] == "48.0GB"
    assert usage["gpu_count"] == 2
    assert two_gpus.calls == ["init", "shutdown"]  # shut down with the lifespan


async def test_api_metrics_answers_when_nvml_fails(
    monkeypatch: pytest.MonkeyPatch, fake_engine: FakeEngine, tmp_path: Path
) -> None:
    nvml = FakeNVML([MemoryInfo(used=1, total=2)], init_error=FakeLibraryNotFound)
    monkeypatch.setitem(sys.modules, "pynvml", nvml.module())
    settings = gateway_settings(fake_engine.url, data_dir=tmp_path)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/api/metrics")
    assert response.status_code == 200
    assert response.json()["resource_usage"]["gpu_memory"] is None
