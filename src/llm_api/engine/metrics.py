"""Reading an engine's Prometheus text: request counts for vLLM and llama-server alike."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# Each engine names the same two gauges differently; vLLM labels its samples per engine
# and model, so several samples are summed.
_RUNNING = ("vllm:num_requests_running", "llamacpp:requests_processing")
_WAITING = ("vllm:num_requests_waiting", "llamacpp:requests_deferred")


@dataclass(frozen=True, slots=True)
class EngineLoad:
    running: int
    waiting: int


def parse_engine_load(text: str) -> EngineLoad | None:
    """Running and waiting request counts, or None when the text has neither metric."""
    running: float | None = None
    waiting: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _RUNNING:
                running = (running or 0.0) + sample.value
            elif sample.name in _WAITING:
                waiting = (waiting or 0.0) + sample.value
    if running is None and waiting is None:
        return None
    return EngineLoad(running=round(running or 0.0), waiting=round(waiting or 0.0))
