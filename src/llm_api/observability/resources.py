"""Machine resources for ``/api/metrics``: memory and CPU via psutil, GPU memory via NVML."""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)

_GIB = 1024**3


def format_bytes(count: int | None) -> str | None:
    """Bytes as the seed wrote them: ``"12.4GB"`` (binary gigabytes, one decimal)."""
    return None if count is None else f"{count / _GIB:.1f}GB"


@dataclass(frozen=True, slots=True)
class GpuMemory:
    used: int
    total: int
    devices: int


class GpuProbe:
    """NVML, initialised on first use; ``None`` for good on a machine without a GPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: bool | None = None  # None: not tried; False: no NVML / no GPU

    def memory(self) -> GpuMemory | None:
        """Blocking (NVML calls); run it in a thread."""
        import pynvml  # noqa: PLC0415 - only loaded where a GPU may exist

        with self._lock:
            if self._state is None:
                try:
                    pynvml.nvmlInit()
                    self._state = pynvml.nvmlDeviceGetCount() > 0
                except pynvml.NVMLError:
                    self._state = False
            if not self._state:
                return None
            try:
                used = total = 0
                count = pynvml.nvmlDeviceGetCount()
                for index in range(count):
                    info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
                    used += int(info.used)
                    total += int(info.total)
            except pynvml.NVMLError:
                log.warning("NVML stopped answering; GPU figures are unavailable")
                return None
            return GpuMemory(used=used, total=total, devices=count)

    def close(self) -> None:
        import pynvml  # noqa: PLC0415 - see memory()

        with self._lock:
            if self._state:
                with contextlib.suppress(pynvml.NVMLError):
                    pynvml.nvmlShutdown()
            self._state = None


@dataclass(frozen=True, slots=True)
class Resources:
    memory_used: int
    memory_total: int
    memory_percent: float
    cpu_percent: float
    gpu: GpuMemory | None


def prime_cpu_percent() -> None:
    """psutil's CPU figure is relative to the previous call; the first one reads 0.0."""
    psutil.cpu_percent(interval=None)


def read_resources(gpu: GpuProbe) -> Resources:
    """Blocking; run it in a thread."""
    memory = psutil.virtual_memory()
    return Resources(
        memory_used=int(memory.total - memory.available),
        memory_total=int(memory.total),
        memory_percent=float(memory.percent),
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        gpu=gpu.memory(),
    )
