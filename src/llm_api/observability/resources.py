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
        with self._lock:
            if self._state is None:
                self._state = _nvml_start()
            if not self._state:
                return None
            import pynvml  # noqa: PLC0415 - loaded by _nvml_start() already

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
        with self._lock:
            if self._state:
                import pynvml  # noqa: PLC0415 - only reached after _nvml_start() loaded it

                with contextlib.suppress(pynvml.NVMLError):
                    pynvml.nvmlShutdown()
            self._state = None


def _nvml_start() -> bool:
    """True when NVML loads and sees a GPU. A missing ``nvidia-ml-py``, a missing driver
    library (``NVMLError_LibraryNotFound``) or no device all mean "no GPU": ``null``
    figures, never an error from ``/api/metrics``."""
    try:
        import pynvml  # noqa: PLC0415 - only loaded where a GPU may exist
    except ImportError:
        log.info("nvidia-ml-py is not installed; GPU figures are unavailable")
        return False
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.info("NVML is unavailable (%s); GPU figures are unavailable", exc)
        return False
    with contextlib.suppress(pynvml.NVMLError):
        if pynvml.nvmlDeviceGetCount() > 0:
            return True
    with contextlib.suppress(pynvml.NVMLError):
        pynvml.nvmlShutdown()
    return False


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
