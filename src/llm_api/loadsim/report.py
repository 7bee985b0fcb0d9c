"""Pictures and a Markdown report from a run's JSON files (``sweep``, ``soak``, ``relay``).

Each run writes its own JSON into the output folder; the report is rendered from whatever
is there, so a soak or a relay run adds its section without repeating the sweep.
matplotlib (the ``bench`` extra) draws the PNGs with its file-only backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from llm_api.loadsim.relay import verdicts

PALETTE = {
    "direct": "#555555",
    "v1": "#1f77b4",
    "chat": "#2ca02c",
    "litellm": "#d62728",
    "floor": "#9467bd",
}
LABELS = {
    "direct": "engine direct",
    "v1": "ours /v1",
    "chat": "ours /api/chat/stream",
    "litellm": "LiteLLM",
    "floor": "bare-Python floor",
}


def load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _series(sweep: dict[str, Any], side: str, *path: str) -> list[float]:
    values = []
    for level in sweep["levels"]:
        value: Any = level["sides"].get(side, {})
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        values.append(math.nan if value is None else float(value))
    return values


def plot_sweep(sweep: dict[str, Any], folder: Path) -> list[str]:  # noqa: PLR0915 - three figures, drawn in order
    import matplotlib  # noqa: PLC0415 - the optional bench extra, loaded only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after use("Agg"), as it must
    from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: PLC0415 - as above

    users = [level["users"] for level in sweep["levels"]]
    sides = sweep["sides"]
    files = []

    def axis(ax: Any, title: str, ylabel: str, log: bool = False) -> None:
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("simultaneous people")
        ax.set_ylabel(ylabel)
        ax.set_xscale("log", base=2)
        ax.set_xticks(users, [str(u) for u in users])
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, alpha=0.3)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for side in sides:
        color = PALETTE.get(side)
        for q, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
            axes[0].plot(
                users,
                [v * 1e3 for v in _series(sweep, side, "ttft_s", q)],
                style,
                color=color,
                marker="o",
                ms=3,
                label=f"{LABELS.get(side, side)} {q}",
            )
            axes[1].plot(
                users, _series(sweep, side, "e2e_s", q), style, color=color, marker="o", ms=3
            )
        axes[2].plot(
            users,
            [v * 100 for v in _series(sweep, side, "goodput")],
            color=color,
            marker="o",
            label=LABELS.get(side, side),
        )
    axis(axes[0], "time to first token", "ms", log=True)
    axis(axes[1], "end to end", "s", log=True)
    slo = sweep["config"]["slo"]
    axis(axes[2], f"goodput (TTFT ≤ {slo['ttft']} s, gap ≤ {slo['gap']} s)", "% of requests")
    axes[2].set_ylim(0, 105)
    axes[0].legend(fontsize=6, ncol=2)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "latency.png", dpi=110)
    plt.close(fig)
    files.append("latency.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for side in sides:
        color = PALETTE.get(side)
        axes[0].plot(
            users,
            _series(sweep, side, "requests_per_s"),
            color=color,
            marker="o",
            label=LABELS.get(side, side),
        )
        axes[1].plot(users, _series(sweep, side, "tokens_per_s"), color=color, marker="o")
    axis(axes[0], "requests per second", "req/s")
    axis(axes[1], "output tokens per second", "tokens/s")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "throughput.png", dpi=110)
    plt.close(fig)
    files.append("throughput.png")

    if "direct" in sides and len(sides) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        base50 = _series(sweep, "direct", "ttft_s", "p50")
        base99 = _series(sweep, "direct", "ttft_s", "p99")
        base_tps = _series(sweep, "direct", "tokens_per_s")
        for side in sides:
            if side == "direct":
                continue
            color = PALETTE.get(side)
            p50 = _series(sweep, side, "ttft_s", "p50")
            p99 = _series(sweep, side, "ttft_s", "p99")
            axes[0].plot(
                users,
                [(a - b) * 1e3 for a, b in zip(p50, base50, strict=True)],
                "-",
                color=color,
                marker="o",
                label=f"{LABELS.get(side, side)} p50",
            )
            axes[0].plot(
                users,
                [(a - b) * 1e3 for a, b in zip(p99, base99, strict=True)],
                ":",
                color=color,
                marker="o",
                label=f"{LABELS.get(side, side)} p99",
            )
            tps = _series(sweep, side, "tokens_per_s")
            axes[1].plot(
                users,
                [a / b if b else math.nan for a, b in zip(tps, base_tps, strict=True)],
                color=color,
                marker="o",
                label=LABELS.get(side, side),
            )
        axis(axes[0], "added time to first token over the engine direct", "ms")
        axes[0].set_yscale("symlog", linthresh=10)  # ours in ms and LiteLLM in s, both readable
        axes[0].yaxis.set_major_formatter(ScalarFormatter())
        axis(axes[1], "tokens/s relative to the engine direct", "× direct")
        axes[1].axhline(1.0, color="#999999", lw=0.8)
        axes[0].legend(fontsize=7)
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "difference.png", dpi=110)
        plt.close(fig)
        files.append("difference.png")
    return files


def plot_soak(soak: dict[str, Any], folder: Path) -> str:
    import matplotlib  # noqa: PLC0415 - the optional bench extra, loaded only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after use("Agg"), as it must

    series = soak["rss_series"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot([t / 60 for t, _ in series], [m for _, m in series], marker=".", ms=3)
    g = soak["growth"]
    ax.set_title(
        f"gateway resident memory, {soak['users']} people for {soak['seconds'] / 60:.0f} min: "
        f"{'LEAK' if g['leak'] else 'no growth beyond noise'}",
        fontsize=10,
    )
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "soak.png", dpi=110)
    plt.close(fig)
    return "soak.png"


# --- Markdown ---------------------------------------------------------------------------
def _ms(value: Any) -> str:
    return (
        "—"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value * 1e3:.1f}"
    )


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "—"
    return f"{value:.{digits}f}"


def _header(run: dict[str, Any]) -> list[str]:
    m = run["machine"]
    v = ", ".join(f"{k} {val}" for k, val in run["versions"].items())
    before = " ".join(f"{x:.2f}" for x in run["load_before"])
    after = " ".join(f"{x:.2f}" for x in run["load_after"])
    return [
        f"- **When**: {run['started']} → {run['ended']} (commit `{run.get('commit') or '?'}`)",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['arch']}, Linux {m['kernel']}",
        f"- **Load average** (1/5/15 min): before {before}, after {after}",
        f"- **Versions**: {v}",
    ]


def sweep_markdown(sweep: dict[str, Any], images: str) -> list[str]:
    c = sweep["config"]
    slo = c["slo"]
    out = [
        "## Simulated people",
        "",
        *_header(sweep),
        f"- **Engine**: {c['engine']}; gateway: {c['gateway']}; sides, interleaved: "
        + ", ".join(LABELS.get(s, s) for s in sweep["sides"]),
        f"- **People**: {', '.join(map(str, c['users']))}; {c['seconds']:g} s per side and "
        f"level in {c['slices']} turns (order reversed every other turn); think time "
        f"{c['think']:g} s (mean, exponential); mix "
        + ", ".join(f"{k} {v:.0%}" for k, v in c["mix"].items())
        + f"; max_tokens {c['max_tokens']} (long prompts {c['long_max_tokens']})",
        f"- **SLO** for goodput: TTFT ≤ {slo['ttft']} s and no gap > {slo['gap']} s "
        f"(streams), ≤ {slo['e2e']} s (email calls)",
        "",
        f"![latency and goodput]({images}latency.png)",
        "",
        f"![throughput]({images}throughput.png)",
        "",
    ]
    if (Path(sweep.get("_folder", ".")) / "difference.png").exists() or "direct" in sweep["sides"]:
        out += [f"![direct vs gateway]({images}difference.png)", ""]
    out += [
        "| people | side | req/s | tok/s | TTFT p50/p90/p99 ms | gap p50/p99 ms | TPOT p50 ms "
        "| e2e p50/p90/p99 s | goodput | errors | CPU ms/req | CPU µs/chunk "
        "| engine run/wait (mean/max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in sweep["levels"]:
        for side, f in level["sides"].items():
            t, g, e = f["ttft_s"], f["gap_s"], f["e2e_s"]
            eng = f.get("engine", {})
            run, wait = eng.get("running", {}), eng.get("waiting", {})
            errors = ", ".join(f"{k} {n}" for k, n in f["errors"].items()) or "0"
            out.append(
                f"| {level['users']} | {LABELS.get(side, side)} | {_num(f['requests_per_s'])} "
                f"| {_num(f['tokens_per_s'], 0)} | {_ms(t['p50'])} / {_ms(t['p90'])} / "
                f"{_ms(t['p99'])} | {_ms(g['p50'])} / {_ms(g['p99'])} | "
                f"{_ms(f['tpot_s']['p50'])} | {_num(e['p50'], 2)} / {_num(e['p90'], 2)} / "
                f"{_num(e['p99'], 2)} | {_num(f['goodput'] * 100, 1)} % | {errors} | "
                f"{_num(f.get('cpu_ms_per_request'), 2)} | "
                f"{_num(f.get('cpu_us_per_chunk'), 0)} | "
                f"{_num(run.get('mean'))}/{_num(run.get('max'), 0)} · "
                f"{_num(wait.get('mean'))}/{_num(wait.get('max'), 0)} |"
            )
    out += [
        "",
        "CPU per request and per chunk: all of the relay process's CPU (its threads, from "
        "`/proc`) while that side ran, divided by its requests and by its chunks — idle "
        "wake-ups and background work included, so at few people the figures are mostly "
        "the process's floor; `llm-api bench relay` splits them cleanly.",
    ]
    cache = [
        (level["users"], side, f["engine"].get("prefix_cache_hit_rate"))
        for level in sweep["levels"]
        for side, f in level["sides"].items()
        if f.get("engine", {}).get("prefix_cache_hit_rate") is not None
    ]
    if cache:
        out += [
            "",
            "Engine prefix-cache hit rate: "
            + "; ".join(f"{u} people {LABELS.get(s, s)} {r:.0%}" for u, s, r in cache),
        ]
    else:
        out += [
            "",
            "The engine exports no prefix-cache counters (llama-server and the fake "
            "engine do not; vLLM does).",
        ]
    mem = sweep.get("memory", {})
    if mem:
        out += [
            "",
            "| process | pid | resident memory idle MiB | at the top of the sweep MiB |",
            "|---|---|---|---|",
        ]
        for name, pids in mem.get("idle", {}).items():
            for pid, idle in pids.items():
                top = mem.get("top", {}).get(name, {}).get(pid)
                out.append(f"| {name} | {pid} | {_num(idle)} | {_num(top)} |")
        if mem.get("engine"):
            out.append("")
            out.append(f"Engine memory (its own metrics, top level): {mem['engine']}")
    out.append("")
    return out


def soak_markdown(soak: dict[str, Any], images: str) -> list[str]:
    g = soak["growth"]
    verdict = "**leak**" if g["leak"] else "**no growth beyond noise** (no leak)"
    f = soak["figures"]
    out = [
        "## Soak",
        "",
        *_header(soak),
        f"- {soak['users']} people on {LABELS.get(soak['side'], soak['side'])} for "
        f"{soak['seconds'] / 60:.0f} minutes; {f['requests']} requests, "
        f"{_num(f['requests_per_s'])} req/s, goodput {_num(f['goodput'] * 100)} %, errors "
        f"{sum(f['errors'].values())}",
        f"- Resident memory (all gateway processes): {_num(g['start_mib'])} → "
        f"{_num(g['end_mib'])} MiB after the first tenth; fitted rise {_num(g['growth_mib'], 2)}"
        f" MiB against a noise band of {_num(g['noise_mib'], 2)} MiB: {verdict}",
        "",
        f"![soak]({images}soak.png)",
        "",
        "| minute | req/s | TTFT p50 ms | goodput | errors |",
        "|---|---|---|---|---|",
    ]
    for m in soak["minutes"]:
        out.append(
            f"| {m['minute']} | {_num(m['requests_per_s'])} | {_ms(m['ttft_p50_s'])} | "
            f"{_num(m['goodput'] * 100)} % | {m['errors']} |"
        )
    out.append("")
    return out


def relay_markdown(relay: dict[str, Any]) -> list[str]:
    c = relay["config"]
    out = [
        "## The relay's cost, same-run ratios",
        "",
        *_header(relay),
        f"- Fake engine: {c['chunks']} chunks {c['delay'] * 1000.0:.0f} ms apart; one worker per "
        f"relay; {c['single']} requests per side at 1 stream, {c['rounds']} rounds per side at "
        "64 and 256; sides interleaved request by request / round by round.",
        "- CPU: the relay process's threads (`/proc/<pid>/task/*/schedstat`) around its own "
        "turns. Per request and per chunk: 64-stream rounds of 64-chunk streams and of 1-chunk "
        "streams (`max_tokens: 1`), the slope between them is the cost of a chunk.",
        "",
        "| side | TTFT p50 1 stream ms | TTFT p99 64 ms | chunks/s 64 | largest gap 256 ms "
        "| CPU µs/chunk 1 / 64 / 256 | CPU ms/request (64) | CPU µs/chunk, split (64) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side, f in relay["sides"].items():
        out.append(
            f"| {LABELS.get(side, side)} | {_num(f['ttft_p50_ms_1'], 2)} | "
            f"{_num(f['ttft_p99_ms_64'])} | {_num(f['throughput_chunks_per_s_64'], 0)} | "
            f"{_num(f['max_gap_ms_256'])} | {_num(f.get('cpu_us_per_chunk_1'), 0)} / "
            f"{_num(f.get('cpu_us_per_chunk_64'), 0)} / "
            f"{_num(f.get('cpu_us_per_chunk_256'), 0)}"
            f" | {_num(f.get('cpu_ms_per_request_64'), 3)} | "
            f"{_num(f.get('cpu_us_per_chunk_split_64'), 1)} |"
        )
    out += ["", "| target (ours, /v1) | goal | measured | met |", "|---|---|---|---|"]
    for name, sense, target, value, met in verdicts(relay["ratios"]):
        mark = "—" if met is None else ("yes" if met else "no")
        out.append(f"| {name} | {sense} {target:g} | {_num(value, 3)} | {mark} |")
    chat = relay["ratios"].get("chat")
    if chat:
        out += [
            "",
            "/api/chat/stream (stores the conversation, so more per request): "
            + ", ".join(f"{k} {_num(v, 3)}" for k, v in chat.items()),
        ]
    floor = relay["ratios"].get("floor")
    if floor:
        out += ["", "The floor itself: " + ", ".join(f"{k} {_num(v, 3)}" for k, v in floor.items())]
    errors = {k: v for k, v in relay["errors"].items() if any(v.values())}
    if errors:
        out += ["", f"Failed streams: {errors}"]
    out.append("")
    return out


def render(folder: Path, title: str = "Load simulator report", images: str = "") -> str:
    """The Markdown for everything in ``folder``; ``images`` prefixes the PNG paths."""
    lines = [f"# {title}", ""]
    sweep, soak, relay = load(folder, "sweep"), load(folder, "soak"), load(folder, "relay")
    if sweep:
        lines += sweep_markdown(sweep, images)
    if soak:
        lines += soak_markdown(soak, images)
    if relay:
        lines += relay_markdown(relay)
    if not (sweep or soak or relay):
        lines.append("No results yet: run `llm-api bench`.")
    notes = folder / "notes.md"
    if notes.exists():  # what people concluded from these figures, kept beside them
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n"


DOCS_INTRO = """\
Generated by `llm-api bench --docs` (the sweep), `llm-api bench soak --docs` and
`llm-api bench relay --docs`; each run rewrites its part (`docs/bench/*.json`) and this page.
Every figure is a same-run comparison of interleaved sides: the machine these ran on is
shared, so read the ratios, not the absolute times. Other benchmarks:

| what | harness | results |
|---|---|---|
| `/api/chat/stream` relay cost | `bench/chat_bench.py` | [chat-benchmarks.md](chat-benchmarks.md) |
| `/v1/chat/completions` relay cost | `bench/openai_relay_bench.py` | [openai-benchmarks.md](openai-benchmarks.md) |
| conversation store | `bench/store_bench.py` | [sessions-benchmarks.md](sessions-benchmarks.md) |
| email endpoints on the embedded engine | `bench/email_bench.py` | [email-benchmarks.md](email-benchmarks.md) |
| vLLM CPU build, direct vs gateway | `bench/vllm_bench.py` | [vllm-benchmarks.md](vllm-benchmarks.md) |
| engine client: aiohttp vs httpx | `bench/http_client_bench.py` | [http-client-benchmarks.md](http-client-benchmarks.md) |
"""  # noqa: E501 - Markdown table rows do not wrap


def write(folder: Path, docs: Path | None = None) -> Path:
    """Plots and ``report.md`` in ``folder``; with ``docs``, also that Markdown page."""
    sweep, soak = load(folder, "sweep"), load(folder, "soak")
    if sweep:
        plot_sweep(sweep, folder)
    if soak:
        plot_soak(soak, folder)
    report = folder / "report.md"
    report.write_text(render(folder))
    if docs is not None:
        prefix = folder.resolve().relative_to(docs.parent.resolve()).as_posix() + "/"
        body = render(folder, "Benchmarks", prefix)
        head, rest = body.split("\n", 2)[0], body.split("\n", 2)[2]
        docs.write_text(head + "\n\n" + DOCS_INTRO + "\n" + rest)
    return report
