"""What the simulator reads from the machine: CPU time and memory from /proc, the machine.

CPU time is the sum over every thread of ``/proc/<pid>/task/*/schedstat`` (nanoseconds: the
10 ms ticks of ``/proc/<pid>/stat`` are far too coarse for a relay's microseconds per chunk).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil


@contextlib.contextmanager
def client_pauses_held() -> Iterator[None]:
    """No garbage collection in this (the client's) process while a measured part runs.

    The simulator's own heap holds every sample and every open stream; a full collection
    of it took 35-57 ms on a 2-core VM, and a pause in the client is a gap in every side's
    stream alike. Collections run between the measured parts instead.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's workers are children of its supervisor)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_ns(pids: list[int]) -> int:
    """CPU time of every thread of these processes, ns (threads or processes may end)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    total += int((task / "schedstat").read_text().split()[0])
    return total


def rss_mib(pid: int) -> float | None:
    """Resident memory of one process (VmRSS), MiB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def listening_pid(port: int) -> int | None:
    """The process that listens on a local TCP port (for a gateway the bench did not start)."""
    with contextlib.suppress(psutil.AccessDenied, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return int(conn.pid) if conn.pid else None
    return None


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def versions(litellm: str | None = None) -> dict[str, str]:
    names = ("llm-api", "fastapi", "starlette", "uvicorn", "aiohttp", "pydantic", "uvloop")
    found = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    if litellm:
        found["litellm"] = litellm
    return found


def git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(  # noqa: S603 - a fixed git command
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine() -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
