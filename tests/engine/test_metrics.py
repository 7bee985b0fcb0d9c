"""Parsing both engines' Prometheus text into running / waiting counts."""

from __future__ import annotations

from llm_api.engine.metrics import EngineLoad, parse_engine_load

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="gemma"} 3.0
vllm:num_requests_running{engine="1",model_name="gemma"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="gemma"} 2.0
# HELP vllm:prefix_cache_queries_total Prefix cache queries.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="gemma"} 120.0
"""

LLAMACPP = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 52
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 5
"""


def test_vllm_labelled_samples_are_summed() -> None:
    assert parse_engine_load(VLLM) == EngineLoad(running=4, waiting=2)


def test_llamacpp_names() -> None:
    assert parse_engine_load(LLAMACPP) == EngineLoad(running=2, waiting=5)


def test_idle_engine_reports_zero_not_none() -> None:
    text = LLAMACPP.replace(" 2\n", " 0\n").replace(" 5\n", " 0\n")
    assert parse_engine_load(text) == EngineLoad(running=0, waiting=0)


def test_unrelated_metrics_give_none() -> None:
    assert parse_engine_load("# TYPE x gauge\nx 1\n") is None
    assert parse_engine_load("") is None
