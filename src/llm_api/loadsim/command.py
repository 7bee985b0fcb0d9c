"""``llm-api bench``: simulated people against the gateway, with plots and a report.

    llm-api bench [sweep]      people 1, 4, 16, 64, 256 on every side, interleaved
    llm-api bench soak         a steady load for 10 minutes: does memory grow?
    llm-api bench relay        the relay's cost: direct, floor, ours, LiteLLM (fake engine)
    llm-api bench report       redraw the plots and the report from the folder's JSON

The engine is the fake one (relay only, the default), the embedded llama-server
(``--engine embedded``), the configured one (``--engine configured``: LLM_API_ENGINE_URL or
the supervisor's port, e.g. vLLM), or any URL. The gateway is started here (``--workers``)
unless ``--gateway URL`` names a running one. Traffic goes to loopback, or to the URLs the
configuration or the command line name; nothing else. ``--docs`` writes to docs/bench/ and
regenerates docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import signal
import time
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from llm_api.loadsim import relay as relay_bench
from llm_api.loadsim import report, runner
from llm_api.loadsim.people import Arm
from llm_api.loadsim.prompts import parse_mix
from llm_api.loadsim.servers import (
    Processes,
    StartError,
    ensure_litellm,
    fake_engine_command,
    free_port,
    gateway_env,
    litellm_command,
    litellm_config,
    litellm_version,
    uvicorn_command,
)
from llm_api.loadsim.stats import Slo
from llm_api.loadsim.system import (
    git_commit,
    listening_pid,
    load_average,
    machine,
    process_tree,
    versions,
)
from llm_api.settings import DEFAULT_LLAMACPP_MODEL, Settings

SIDES = ("direct", "floor", "v1", "chat", "litellm")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
REPO = Path(__file__).resolve().parents[3]


def add_bench_parser(commands: Any) -> None:
    p = commands.add_parser(
        "bench",
        help="simulate people against the gateway: plots and a report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("mode", nargs="?", choices=["sweep", "soak", "relay", "report"], default="sweep")
    p.add_argument(
        "--engine", default="fake", help="fake | embedded | configured | URL (default: fake)"
    )
    p.add_argument("--gateway", metavar="URL", help="a running gateway instead of starting one")
    p.add_argument("--workers", type=int, default=1, help="gateway workers when started here")
    p.add_argument(
        "--sides",
        help="comma list of direct,v1,chat,litellm,floor (sweep: direct,v1,chat; relay: all five)",
    )
    p.add_argument("--users", default="1,4,16,64,256", help="the sweep's levels of people")
    p.add_argument("--seconds", type=float, default=10.0, help="per side and level")
    p.add_argument("--slices", type=int, default=2, help="interleaved turns per level")
    p.add_argument("--think", type=float, default=1.0, help="mean think time, seconds")
    p.add_argument("--mix", default="hebrew=6,english=2,extract=1,summary=1")
    p.add_argument("--slo", default="ttft=2,gap=0.2,e2e=30", help="goodput bounds, seconds")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--long-max-tokens", type=int, default=256)
    p.add_argument("--request-timeout", type=float, default=120.0)
    p.add_argument("--soak-seconds", type=float, default=600.0)
    p.add_argument("--soak-users", type=int, default=16)
    p.add_argument("--soak-side", default="chat", choices=["v1", "chat"])
    p.add_argument("--single", type=int, default=20, help="relay: 1-stream requests per side")
    p.add_argument("--rounds", type=int, default=3, help="relay: rounds per side at 64 and 256")
    p.add_argument("--chunks", type=int, default=64, help="fake engine: chunks per stream")
    p.add_argument("--delay", type=float, default=0.02, help="fake engine: seconds apart")
    p.add_argument(
        "--reply-delay",
        type=float,
        default=0.3,
        help="fake engine: seconds per non-streamed answer",
    )
    p.add_argument("--titles", action="store_true", help="let the gateway write titles")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    p.add_argument(
        "--docs", action="store_true", help="write to docs/bench/ and regenerate docs/BENCHMARKS.md"
    )


def _stop_on_sigterm(*_: object) -> None:
    raise KeyboardInterrupt  # unwinds the run: every process it started is stopped


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    console = Console(stderr=True)
    out: Path = REPO / "docs" / "bench" if args.docs else args.out
    out.mkdir(parents=True, exist_ok=True)
    docs = REPO / "docs" / "BENCHMARKS.md" if args.docs else None
    try:
        if args.mode != "report":
            try:
                import uvloop  # noqa: PLC0415 - optional: plain asyncio without it

                uvloop.run(_run(args, settings, out, console))
            except ImportError:
                asyncio.run(_run(args, settings, out, console))
        written = report.write(out, docs)
    except (StartError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("stopped")
        return 130
    console.print(f"report: {written}" + (f" and {docs}" if docs else ""))
    return 0


def allowed(url: str, settings: Settings, named: set[str]) -> str:
    """The URL, if it is loopback or one the configuration or the command line names."""
    host = urllib.parse.urlsplit(url).hostname or ""
    configured = urllib.parse.urlsplit(settings.engine_base_url).hostname
    if host in LOOPBACK or host == configured or host in named:
        return url.rstrip("/")
    raise ValueError(f"{url}: the bench sends traffic only to loopback or configured URLs")


async def _engine_model(url: str) -> str:
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "/v1/models") as response:
            data = await response.json()
            return str(data["data"][0]["id"])
    except (aiohttp.ClientError, TimeoutError, KeyError, IndexError, TypeError) as exc:
        raise StartError(f"{url}/v1/models gave no model ({type(exc).__name__})") from None


async def _run(args: argparse.Namespace, settings: Settings, out: Path, console: Console) -> None:
    named = {urllib.parse.urlsplit(u).hostname or "" for u in (args.engine, args.gateway) if u}
    mode = args.mode
    engine_kind = "fake" if mode == "relay" else args.engine
    default_sides = "direct,floor,v1,chat,litellm" if mode == "relay" else "direct,v1,chat"
    if mode == "soak":
        default_sides = args.soak_side
    wanted = [s.strip() for s in (args.sides or default_sides).split(",") if s.strip()]
    if unknown := [s for s in wanted if s not in SIDES]:
        raise ValueError(f"unknown side(s) {unknown}; sides are {', '.join(SIDES)}")
    if mode == "relay" and args.gateway:
        raise ValueError("the relay comparison starts its own one-worker gateway")
    procs = Processes()
    load_before = load_average()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    try:
        engine_url, engine_label = _start_engine(args, settings, engine_kind, procs, named)
        model = await _engine_model(engine_url)
        arms, lite_version = _start_sides(
            args,
            settings=settings,
            wanted=wanted,
            engine_url=engine_url,
            model=model,
            procs=procs,
            console=console,
            named=named,
        )
        meta = {
            "started": started,
            "machine": machine(),
            "load_before": load_before,
            "versions": versions(lite_version),
            "commit": git_commit(REPO),
        }
        if mode == "relay":
            result = await _relay(args, arms, console)
            result["config"] = {
                "chunks": args.chunks,
                "delay": args.delay,
                "single": args.single,
                "rounds": args.rounds,
            }
        elif mode == "soak":
            result = await _soak(args, arms[0], engine_url, console)
        else:
            result = await _sweep(args, arms, engine_url, console)
            result["config"]["engine"] = engine_label
            result["config"]["gateway"] = args.gateway or f"started here, {args.workers} worker(s)"
    finally:
        procs.stop_all()
    procs.remove()  # kept when the run failed: its processes' logs say why
    result.update(meta)
    result["ended"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    result["load_after"] = load_average()
    (out / f"{mode}.json").write_text(json.dumps(_finite(result), indent=1, ensure_ascii=False))


def _finite(value: Any) -> Any:
    """NaN and infinity as null: the JSON stays standard."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _start_engine(
    args: argparse.Namespace, settings: Settings, kind: str, procs: Processes, named: set[str]
) -> tuple[str, str]:
    if kind == "fake":
        port = free_port()
        procs.start("engine", fake_engine_command(port, args.chunks, args.delay, args.reply_delay))
        url = f"http://127.0.0.1:{port}"
        procs.wait_up("engine", url + "/health", 60)
        return url, f"fake ({args.chunks} chunks, {args.delay * 1e3:.0f} ms apart)"
    if kind == "embedded":
        from llm_api.engine.launch import (  # noqa: PLC0415 - only this engine kind
            llama_server_command,
        )

        port = free_port()
        embedded = settings.model_copy(update={"vllm_port": port})
        model = settings.model_name or DEFAULT_LLAMACPP_MODEL
        procs.start("engine", llama_server_command(embedded, model))
        url = f"http://127.0.0.1:{port}"
        procs.wait_up("engine", url + "/health", 600)
        return url, f"embedded llama-server ({model}, {settings.engine_parallel} slots)"
    url = settings.engine_base_url if kind == "configured" else kind
    url = allowed(url, settings, named)
    return url, f"at {url}"


def _start_sides(
    args: argparse.Namespace,
    *,
    settings: Settings,
    wanted: list[str],
    engine_url: str,
    model: str,
    procs: Processes,
    console: Console,
    named: set[str],
) -> tuple[list[Arm], str | None]:
    arms: dict[str, Arm] = {}
    if "direct" in wanted:
        arms["direct"] = Arm("direct", engine_url, "openai", model)
    if "v1" in wanted or "chat" in wanted:
        if args.gateway:
            url = allowed(args.gateway, settings, named)
            port = urllib.parse.urlsplit(url).port or 80
            pid = listening_pid(port)
            pids = tuple(process_tree(pid)) if pid else ()
        else:
            port = free_port()
            workers = 1 if args.mode == "relay" else args.workers
            env = gateway_env(engine_url, procs.folder / "gateway-data", workers, args.titles)
            pid = procs.start(
                "gateway", uvicorn_command("llm_api.app:create_app", port, workers), env
            )
            url = f"http://127.0.0.1:{port}"
            procs.wait_up("gateway", url + "/ping", 120)
            time.sleep(0.5 if workers == 1 else 3)  # workers fork after the parent listens
            pids = tuple(process_tree(pid))
        for name, route in (("v1", "openai"), ("chat", "chat")):
            if name in wanted:
                arms[name] = Arm(name, url, route, model, pids, email_endpoints=True)  # type: ignore[arg-type]  # route is one of the two literals
    if "floor" in wanted:
        port = free_port()
        pid = procs.start(
            "floor",
            uvicorn_command("llm_api.loadsim.floor:create_app", port),
            {"LLM_API_ENGINE_URL": engine_url},
        )
        url = f"http://127.0.0.1:{port}"
        procs.wait_up("floor", url + "/ping", 60)
        arms["floor"] = Arm("floor", url, "openai", model, (pid,))
    version = None
    if "litellm" in wanted:
        binary = ensure_litellm(lambda text: console.print(text, markup=False, highlight=False))
        version = litellm_version(binary)
        port = free_port()
        command, env = litellm_command(
            binary, litellm_config(procs.folder, engine_url, model), port
        )
        pid = procs.start("litellm", command, env)
        url = f"http://127.0.0.1:{port}"
        procs.wait_up("litellm", url + "/health/liveliness", 180)
        time.sleep(0.5)
        arms["litellm"] = Arm("litellm", url, "openai", model, tuple(process_tree(pid)))
    return [arms[name] for name in wanted if name in arms], version


def _load(args: argparse.Namespace) -> runner.Load:
    return runner.Load(
        parse_mix(args.mix),
        args.think,
        args.max_tokens,
        args.long_max_tokens,
        args.request_timeout,
        args.seed,
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


async def _sweep(
    args: argparse.Namespace, arms: list[Arm], engine_url: str, console: Console
) -> dict[str, Any]:
    levels = [int(u) for u in args.users.split(",") if u.strip()]
    if not levels or min(levels) < 1:
        raise ValueError("--users: a comma list of positive numbers of people")
    load, slo = _load(args), Slo.parse(args.slo)
    # Warm every path (pools, model lookups, first-request imports), then memory at rest.
    warm = runner.Load(load.mix, 0.0, 4, 4, load.request_timeout, load.seed)
    for arm in arms:
        await runner.run_side(
            arm,
            users=4,
            seconds=1.0,
            load=warm,
            engine_url=None,
            side=runner.SideRun(),
            tick=lambda *_: None,
        )
    await asyncio.sleep(1.0)
    idle = runner.idle_rss(arms)
    total = len(levels) * len(arms) * args.seconds
    with _progress(console) as bar:
        task = bar.add_task("starting", total=total)

        def tick(what: str, done: float) -> None:
            bar.update(task, description=what, completed=done)

        levels_out = await runner.sweep(
            arms,
            levels=levels,
            seconds=args.seconds,
            slices=args.slices,
            load=load,
            slo=slo,
            engine_url=engine_url,
            tick=tick,
        )
    top_level = levels_out[-1]["sides"]
    top: dict[str, dict[str, float]] = {}
    for arm in arms:
        peaks = top_level[arm.name].get("rss_peak_mib", {})
        name = "gateway" if arm.name in ("v1", "chat") else arm.name
        for pid, mib in peaks.items():
            top.setdefault(name, {})[pid] = max(top.get(name, {}).get(pid, 0.0), mib)
    engine_mem = {
        side: f["engine"]["resident_memory_bytes"]["max"] / 2**20
        for side, f in top_level.items()
        if "resident_memory_bytes" in f.get("engine", {})
    }
    return {
        "sides": [a.name for a in arms],
        "levels": levels_out,
        "memory": {
            "idle": idle,
            "top": top,
            "engine": {k: f"{v:.0f} MiB" for k, v in engine_mem.items()},
        },
        "config": {
            "users": levels,
            "seconds": args.seconds,
            "slices": args.slices,
            "think": args.think,
            "mix": load.mix,
            "slo": dataclasses.asdict(slo),
            "max_tokens": args.max_tokens,
            "long_max_tokens": args.long_max_tokens,
        },
    }


async def _soak(
    args: argparse.Namespace, arm: Arm, engine_url: str, console: Console
) -> dict[str, Any]:
    load, slo = _load(args), Slo.parse(args.slo)
    warm = runner.Load(load.mix, 0.0, 4, 4, load.request_timeout, load.seed)
    await runner.run_side(
        arm,
        users=4,
        seconds=2.0,
        load=warm,
        engine_url=None,
        side=runner.SideRun(),
        tick=lambda *_: None,
    )
    with _progress(console) as bar:
        task = bar.add_task("soak", total=args.soak_seconds)

        def tick(what: str, done: float) -> None:
            bar.update(
                task, description=f"soak · {args.soak_users} people · {what}", completed=done
            )

        return await runner.soak(
            arm,
            users=args.soak_users,
            seconds=args.soak_seconds,
            load=load,
            slo=slo,
            engine_url=engine_url,
            tick=tick,
        )


async def _relay(args: argparse.Namespace, arms: list[Arm], console: Console) -> dict[str, Any]:
    with _progress(console) as bar:
        task = bar.add_task("relay", total=1.0)

        def tick(what: str, done: float) -> None:
            bar.update(task, description=what, completed=done)

        return await relay_bench.measure(arms, args.single, args.rounds, tick)
