"""The streaming lane: same answers, guards and middleware as the routes, without FastAPI's
route machinery; anything the lane cannot answer exactly as the route is left to the route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Depends
from prometheus_client.parser import text_string_to_metric_families

from llm_api.app import create_app
from llm_api.auth.guard import Guard
from llm_api.lane import Dispatch, Gateway, _route_of
from llm_api.openai.router import CompletionsLane
from tests.auth.conftest import bearer, make_key, secured_settings
from tests.conftest import free_port, gateway_settings
from tests.fakes import FakeEngine
from tests.sse import parse_events

HEBREW = "שלום! מה שלומך היום?"
CHAT = {"messages": [{"role": "user", "content": HEBREW}]}
V1 = {"model": "fake-model", "messages": CHAT["messages"], "stream": True}


@asynccontextmanager
async def serving(app: Gateway) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                       lifespan="on", timeout_graceful_shutdown=1)
    )  # fmt: skip
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield http, app
    finally:
        server.should_exit = True
        await task


def lane_requests(app: Gateway) -> int:
    stack = app.middleware_stack
    assert isinstance(stack, Dispatch)
    return stack.lane_requests


async def test_both_streaming_routes_are_served_in_the_lane(fake_engine: FakeEngine) -> None:
    app = create_app(gateway_settings(fake_engine.url))
    assert isinstance(app, Gateway)
    async with serving(app) as (http, _):
        v1 = await http.post("/v1/chat/completions", json=V1)
        assert lane_requests(app) == 1
        chat = await http.post("/api/chat/stream", json=CHAT)
        assert lane_requests(app) == 2
        ping = await http.get("/ping")  # everything else: the full stack
        assert lane_requests(app) == 2
    for response in (v1, chat):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        # The app's own middleware ran: the observer's request id, the security headers.
        assert response.headers["x-request-id"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert response.headers["cache-control"] == "no-store"
    events = parse_events(chat.text)
    assert "".join(e["content"] for e in events if e["type"] == "content") == "".join(
        fake_engine.state.chunks
    )
    assert events[-1]["type"] == "done"
    assert chat.headers["x-session-id"] == events[-1]["session_id"]
    assert v1.text.rstrip().endswith("data: [DONE]")
    assert ping.status_code == 200


async def test_the_observer_labels_lane_requests_by_route(fake_engine: FakeEngine) -> None:
    app = create_app(gateway_settings(fake_engine.url, metrics_public=True))
    async with serving(app) as (http, _):
        # The counters are the process's: other tests' requests are in them already.
        before = _requests_by_route((await http.get("/metrics")).text)
        await http.post("/api/chat/stream", json=CHAT)
        after = _requests_by_route((await http.get("/metrics")).text)
    assert after.get("/api/chat/stream", 0) == before.get("/api/chat/stream", 0) + 1
    assert after.get("unmatched", 0) == before.get("unmatched", 0)


def _requests_by_route(exposition: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != "llm_api_requests":
            continue
        for sample in family.samples:
            if sample.name == "llm_api_requests_total":
                route = sample.labels["route"]
                counts[route] = counts.get(route, 0.0) + sample.value
    return counts


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/v1/chat/completions", b"{not json", {"content-type": "application/json"}, 400),
        ("/v1/chat/completions", b'{"messages": []}', {"content-type": "application/json"}, 400),
        ("/api/chat/stream", b"{not json", {"content-type": "application/json"}, 422),
        ("/api/chat/stream", b'{"messages": []}', {"content-type": "application/json"}, 422),
        ("/api/chat/stream", '{"messages":[{"role":"user","content":"שלום"}]}'.encode(),
         {"content-type": "text/plain"}, 415),  # llm_api.json_body: JSON only
    ],
)  # fmt: skip
async def test_what_the_lane_cannot_answer_goes_to_the_route(
    fake_engine: FakeEngine, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    app = create_app(gateway_settings(fake_engine.url))
    async with serving(app) as (http, _):
        response = await http.post(path, content=body, headers=headers)
        assert lane_requests(app) == 0
    assert response.status_code == status
    assert response.json()["error"]["message"]  # the route's own envelope and words
    assert response.headers["x-request-id"]


async def test_a_chunked_body_goes_to_the_route(fake_engine: FakeEngine) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"messages":[{"role":"user",'
        yield '"content":"שלום"}]}'.encode()

    app = create_app(gateway_settings(fake_engine.url))
    async with serving(app) as (http, _):
        response = await http.post("/api/chat/stream", content=body(),
                                   headers={"content-type": "application/json"})  # fmt: skip
        assert lane_requests(app) == 0
    assert response.status_code == 200
    assert parse_events(response.text)[-1]["type"] == "done"


async def test_the_lane_runs_the_routes_guards(fake_engine: FakeEngine) -> None:
    settings = secured_settings(fake_engine.url)
    email_only = await make_key(settings, "דנה", "email")
    chat_key = await make_key(settings, "יוסי", "chat")
    app = create_app(settings)
    async with serving(app) as (http, _):
        for path, body in (("/v1/chat/completions", V1), ("/api/chat/stream", CHAT)):
            missing = await http.post(path, json=body)
            wrong = await http.post(path, json=body, headers=bearer(email_only))
            right = await http.post(path, json=body, headers=bearer(chat_key))
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"]
            assert wrong.status_code == 403, path
            assert "'chat' scope" in wrong.json()["error"]["message"]
            assert right.status_code == 200, path
        assert lane_requests(app) == 6


def test_the_lanes_guards_are_the_registered_routes(fake_engine: FakeEngine) -> None:
    app = create_app(secured_settings(fake_engine.url))
    for path in ("/v1/chat/completions", "/api/chat/stream"):
        route, guards = _route_of(app, path)
        assert route.path == path
        assert [g.required_scope for g in guards] == ["chat"]  # type: ignore[attr-defined]
        assert all(isinstance(g, Guard) for g in guards)


def test_a_route_with_a_dependency_the_lane_cannot_run_is_refused() -> None:
    async def extra() -> None:
        return None

    app = Gateway(max_body_bytes=1000)
    router = APIRouter(dependencies=[Depends(Guard("chat")), Depends(extra)])

    @router.post("/v1/chat/completions")
    async def completions() -> None:
        return None

    app.include_router(router)
    app.serve_in_lane("/v1/chat/completions", CompletionsLane())
    with pytest.raises(RuntimeError, match="cannot run in the lane"):
        app.build_middleware_stack()
