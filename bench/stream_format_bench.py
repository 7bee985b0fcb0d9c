"""What the two-dialect content event costs per chunk, against the seed's one-dialect event.

Both encoders run in this process on the same texts (Hebrew and English deltas of 1-12
characters, as llama-server and vLLM send them), in interleaved rounds (old, new, old, …) so
that machine noise hits both alike; the figure is the same-run difference per chunk and the
ratio. Bytes per chunk are reported too (the wire cost).

Run:  .venv/bin/python -m bench.stream_format_bench [--chunks 200000] [--rounds 8] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from llm_api.chat.router import content_event

TEXTS = ["שלום", " עולם", "!", " איך", " אפשר", " לעזור", "?"]
TEXTS += [" Hello", " world", ",", "\n", ' "x"']


def seed_event(text: str) -> bytes:
    """The seed's event, encoded as the router did before: one dict, one dumps."""
    return b"data: " + orjson.dumps({"type": "content", "content": text}) + b"\n\n"


def _time(encode: Callable[[str], bytes], texts: list[str]) -> float:
    start = time.perf_counter()
    for text in texts:
        encode(text)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    texts = [TEXTS[i % len(TEXTS)] for i in range(args.chunks)]
    load_before = os.getloadavg()
    old: list[float] = []
    new: list[float] = []
    for _ in range(args.rounds):
        old.append(_time(seed_event, texts) / args.chunks * 1e6)
        new.append(_time(content_event, texts) / args.chunks * 1e6)
    old_us, new_us = statistics.median(old), statistics.median(new)
    result = {
        "chunks_per_round": args.chunks,
        "rounds": args.rounds,
        "seed_event_us_per_chunk": round(old_us, 3),
        "two_dialect_event_us_per_chunk": round(new_us, 3),
        "added_us_per_chunk": round(new_us - old_us, 3),
        "ratio": round(new_us / old_us, 3),
        "seed_event_bytes_mean": statistics.fmean(len(seed_event(t)) for t in TEXTS),
        "two_dialect_event_bytes_mean": statistics.fmean(len(content_event(t)) for t in TEXTS),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
