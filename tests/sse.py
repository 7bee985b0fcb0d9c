"""Reading the gateway's SSE answers in tests."""

from __future__ import annotations

from typing import Any

import httpx
import orjson


def parse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("data:"):
            events.append(orjson.loads(line[5:].strip()))
    return events


async def stream_events(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    async with client.stream(
        "POST", "/api/chat/stream", json=body, headers={"Accept": "text/event-stream"}
    ) as response:
        text = (await response.aread()).decode()
    return response, parse_events(text)
