"""The test suite's fake engine as a standalone process, for benchmarks."""

from __future__ import annotations

import argparse
import asyncio

from tests.fakes import FakeEngine, FakeEngineState


async def serve(port: int, chunks: int, delay: float) -> None:
    from aiohttp import web

    state = FakeEngineState(chunks=[f"tok{i} " for i in range(chunks)], chunk_delay=delay)
    engine = FakeEngine(state)
    runner = web.AppRunner(engine.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.02)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.chunks, args.delay))


if __name__ == "__main__":
    main()
