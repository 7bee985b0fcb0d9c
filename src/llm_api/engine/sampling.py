"""Sampling defaults per engine kind, for requests that do not set their own.

The embedded engine serves a small *base* model (Gemma 3 270M) that, left at llama-server's
defaults (no penalties), repeats one sentence until ``max_tokens``. llama.cpp's DRY sampler
("don't repeat yourself": penalizes extending a sequence that already occurred) and a mild
repetition penalty stop that; measured in bench/sampling_bench.py (docs/clients-benchmarks.md).
vLLM serves an instruction-tuned model in production, so it gets no overrides.
"""

from __future__ import annotations

from typing import Any

from llm_api.engine.client import ModelInfo

LLAMACPP_SAMPLING: dict[str, Any] = {
    "dry_multiplier": 0.8,
    "dry_base": 1.75,
    "dry_allowed_length": 2,
    "dry_penalty_last_n": 1024,  # look back over the whole reply (-1 is refused)
    "repeat_penalty": 1.1,
    "repeat_last_n": 256,
}

# The embedded model's replies, once they stop looping, end well within this (median
# lengths in docs/clients-benchmarks.md); 1,024 tokens took ~26 s on a quiet 2-core machine.
EMBEDDED_MAX_TOKENS = 512


def engine_defaults(model: ModelInfo, default_max_tokens: int) -> tuple[int, dict[str, Any]]:
    """The default ``max_tokens`` and the sampling fields to add for the serving engine."""
    if model.owned_by == "llamacpp":  # llama-server names itself so in /v1/models
        return min(default_max_tokens, EMBEDDED_MAX_TOKENS), LLAMACPP_SAMPLING
    return default_max_tokens, {}
