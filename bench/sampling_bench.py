"""Sampling presets on the embedded engine: do they stop the base model's degenerate loops?

20 prompts (10 Hebrew, 10 English, the seed's own joke request first) are sent to the
engine's ``/v1/chat/completions`` with each preset in turn, prompt by prompt (preset A, B,
C, D on prompt 1, then on prompt 2, …), four requests at a time (the engine's four slots),
so that machine load falls on every preset alike. Same system prompts and chat template as
the gateway sends. Per preset: median reply length (characters and completion tokens),
median time to complete, the share of word 4-grams that repeat an earlier 4-gram of the
same reply, the share of replies that ran into ``max_tokens``. Every figure is from one run.

Run (an engine on PORT, e.g. the test fixture's command):
    .venv/bin/python -m bench.sampling_bench --engine http://127.0.0.1:PORT \
        [--max-tokens 160] [--out docs/clients-sampling-bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from llm_api.chat.prompts import SYSTEM_PROMPTS
from llm_api.chat.schemas import Language
from llm_api.engine.sampling import LLAMACPP_SAMPLING

PROMPTS: list[tuple[Language, str]] = [
    (Language.HEBREW, "שלום! תוכל לספר לי בדיחה?"),
    (Language.HEBREW, "מה ההבדל בין TCP ל-UDP?"),
    (Language.HEBREW, "תן לי מתכון פשוט לעוגת שוקולד."),
    (Language.HEBREW, "איך כותבים מייל מנומס לבקשת חופשה?"),
    (Language.HEBREW, "ספר לי על ירושלים."),
    (Language.HEBREW, "מה כדאי לעשות בסוף שבוע גשום?"),
    (Language.HEBREW, "הסבר בקצרה מה זה בינה מלאכותית."),
    (Language.HEBREW, "כתוב שיר קצר על הים."),
    (Language.HEBREW, "איך מתכוננים לראיון עבודה?"),
    (Language.HEBREW, "מה הם היתרונות של רכיבה על אופניים?"),
    (Language.ENGLISH, "Hello! Can you tell me a joke?"),
    (Language.ENGLISH, "What is the difference between TCP and UDP?"),
    (Language.ENGLISH, "Give me a simple chocolate cake recipe."),
    (Language.ENGLISH, "How do I write a polite email asking for a day off?"),
    (Language.ENGLISH, "Tell me about Jerusalem."),
    (Language.ENGLISH, "What should I do on a rainy weekend?"),
    (Language.ENGLISH, "Explain briefly what artificial intelligence is."),
    (Language.ENGLISH, "Write a short poem about the sea."),
    (Language.ENGLISH, "How should I prepare for a job interview?"),
    (Language.ENGLISH, "What are the benefits of cycling?"),
]

# "before" is what the gateway sent until now: no sampling fields (llama-server defaults:
# temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no penalties).
PRESETS: dict[str, dict[str, Any]] = {
    "before": {},
    "chosen": LLAMACPP_SAMPLING,
}
# Single-sampler presets, for a longer run on a quieter machine (--all).
MORE_PRESETS: dict[str, dict[str, Any]] = {
    "repeat_penalty_1.15": {"repeat_penalty": 1.15, "repeat_last_n": 256},
    "dry_0.8": {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2,
                "dry_penalty_last_n": 1024},
}  # fmt: skip


def repeated_4gram_share(text: str) -> float:
    words = text.split()
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    if not grams:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeated = 0
    for gram in grams:
        if gram in seen:
            repeated += 1
        seen.add(gram)
    return repeated / len(grams)


async def one(
    http: aiohttp.ClientSession, url: str, preset: dict[str, Any], prompt: tuple[Language, str],
    max_tokens: int,
) -> dict[str, Any]:  # fmt: skip
    language, text = prompt
    body = {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPTS[language]},
            {"role": "user", "content": text},
        ],
        "max_tokens": max_tokens,
        **preset,
    }
    start = time.perf_counter()
    async with http.post(url + "/v1/chat/completions", json=body) as response:
        answer = await response.json()
    elapsed = time.perf_counter() - start
    content = answer["choices"][0]["message"]["content"] or ""
    return {
        "seconds": elapsed,
        "chars": len(content),
        "tokens": answer["usage"]["completion_tokens"],
        "repeat4": repeated_4gram_share(content),
        "length_cut": answer["choices"][0]["finish_reason"] == "length",
        "text": content[:300],
    }


async def run(url: str, max_tokens: int, prompts: int) -> dict[str, Any]:
    # Interleaved; --prompts N takes N prompts alternating Hebrew and English.
    order = [i for pair in zip(range(10), range(10, 20), strict=True) for i in pair][:prompts]
    jobs = [(name, i) for i in order for name in PRESETS]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in PRESETS}
    gate = asyncio.Semaphore(4)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def job(name: str, i: int) -> None:
            async with gate:
                result = await one(http, url, PRESETS[name], PROMPTS[i], max_tokens)
            results[name].append({"prompt": i, **result})

        await asyncio.gather(*(job(name, i) for name, i in jobs))
    summary = {}
    for name, rows in results.items():
        rows.sort(key=lambda r: r["prompt"])
        summary[name] = {
            "median_chars": statistics.median(r["chars"] for r in rows),
            "median_tokens": statistics.median(r["tokens"] for r in rows),
            "median_seconds": round(statistics.median(r["seconds"] for r in rows), 2),
            "mean_repeated_4gram_share": round(statistics.fmean(r["repeat4"] for r in rows), 3),
            "replies_cut_by_max_tokens": sum(r["length_cut"] for r in rows),
            "replies_with_over_20pct_repeated_4grams": sum(r["repeat4"] > 0.2 for r in rows),
        }
    return {"summary": summary, "presets": PRESETS, "replies": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", required=True)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--all", action="store_true", help="also the single-sampler presets")
    args = parser.parse_args()
    if args.all:
        PRESETS.update(MORE_PRESETS)
    load_before = os.getloadavg()
    started = time.time()
    await_result = asyncio.run(run(args.engine.rstrip("/"), args.max_tokens, args.prompts))
    result = {
        "max_tokens": args.max_tokens,
        "prompts": args.prompts,
        "wall_seconds": round(time.time() - started, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        **await_result,
    }
    print(json.dumps(result["summary"], indent=2, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
