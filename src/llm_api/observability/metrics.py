"""The gateway's Prometheus metrics, declared once; every feature imports and updates these.

Declaring a metric registers it and, in multiprocess mode, maps a file per worker; it does
no I/O beyond that. Multiprocess mode is chosen by ``prometheus_client`` itself from
``PROMETHEUS_MULTIPROC_DIR``, which the supervisor sets (before any worker starts) when it
runs several workers; :func:`exposition` then merges every worker's files.

Names are ``llm_api_*``. Engine metrics (``vllm:*``, ``llamacpp:*``) stay the engine's: scrape
the engine's own ``/metrics`` beside ours (README, "Metrics and logs").

Labels are bounded: ``route`` is a route *template* (``/v1/chat/completions``) or
``unmatched``, never a raw path.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Seconds. TTFT on a CPU engine runs to seconds; on vLLM tens of milliseconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 5)

REQUESTS = Counter(
    "llm_api_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "llm_api_request_duration_seconds",
    "End-to-end latency: request received to last byte sent (for streams, the last event).",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
STREAMS_IN_FLIGHT = Gauge(
    "llm_api_streams_in_flight",
    "Server-sent-event streams open now.",
    ["route"],
    multiprocess_mode="livesum",
)
TIME_TO_FIRST_TOKEN = Histogram(
    "llm_api_time_to_first_token_seconds",
    "Request received to first streamed event sent to the client.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
INTER_TOKEN_GAP = Histogram(
    "llm_api_inter_token_gap_seconds",
    "Time between consecutive streamed events sent to the client.",
    ["route"],
    buckets=_GAP_BUCKETS,
)
PROMPT_TOKENS = Counter(
    "llm_api_prompt_tokens", "Prompt tokens, as the engine counted them.", ["route"]
)
COMPLETION_TOKENS = Counter(
    "llm_api_completion_tokens", "Completion tokens, as the engine counted them.", ["route"]
)
ENGINE_ERRORS = Counter(
    "llm_api_engine_errors",
    "Engine failures seen by the gateway, by error type and phase (before/after first byte).",
    ["type", "phase"],
)
CLIENT_DISCONNECTS = Counter(
    "llm_api_client_disconnects",
    "Clients that went away before their response was complete.",
    ["route"],
)
UPSTREAM_ABORTS = Counter(
    "llm_api_upstream_aborts",
    "Engine requests closed early because the client went away (frees the engine slot).",
    ["route"],
)
REJECTIONS = Counter(
    "llm_api_rejections",
    "Requests refused for load: 429 (rate or quota) and 503 (engine or capacity).",
    ["route", "status"],
)
CONTEXT_TRUNCATIONS = Counter(
    "llm_api_context_truncations",
    "Conversations whose oldest turns were dropped to fit the context window.",
    ["feature"],
)
SCHEMA_RETRIES = Counter(
    "llm_api_schema_retries",
    "Structured-output answers that failed validation and were asked for again.",
    ["feature"],
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> tuple[bytes, str]:
    """The Prometheus text of this process, or of every worker in multiprocess mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """Drop a stopped worker's live gauges (in-flight streams) from the merged view."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # untyped


def fresh_multiprocess_dir(path: Path) -> Path:
    """An empty directory for PROMETHEUS_MULTIPROC_DIR: files left by an earlier run would
    be merged into this one's counters (and their dead workers' gauges)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@functools.lru_cache(maxsize=4096)
def child(metric: Any, *label_values: str) -> Any:
    """``metric.labels(*label_values)``, remembered: ``labels()`` takes a lock and builds
    a tuple on every call, which showed up in the relay's per-request CPU profile. Label
    values here are bounded (route templates, statuses), so the cache stays small."""
    return metric.labels(*label_values)
