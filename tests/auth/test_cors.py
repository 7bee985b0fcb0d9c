"""CORS: the original web client's preflight passes with the defaults; headers are settings.

The original Next.js client sends ``X-Client-ID: chatplg-ui`` and ``Content-Type:
application/json`` on every POST, so the browser asks first. Before LLM_API_CORS_HEADERS the
allowed headers were hard-coded and that preflight got 400 "Disallowed CORS headers".
"""

from __future__ import annotations

import httpx

from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine

ORIGIN = "http://chat.example.org:3000"


def _preflight(headers: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_the_original_clients_preflight_passes_with_the_defaults(
    fake_engine: FakeEngine,
) -> None:
    settings = gateway_settings(fake_engine.url, cors_origins=[ORIGIN])
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        for path in ("/api/chat/stream", "/api/title/generate", "/api/health"):
            answer = await http.options(path, headers=_preflight("content-type,x-client-id"))
            assert answer.status_code == 200, (path, answer.text)
            allowed = answer.headers["access-control-allow-headers"].lower()
            assert "x-client-id" in allowed
            assert "content-type" in allowed
            assert answer.headers["access-control-allow-origin"] == ORIGIN
        # Then the request itself, as the client sends it.
        title = await http.post(
            "/api/chat/stream",
            json={"messages": [{"role": "user", "content": "שלום"}], "stream": False},
            headers={"Origin": ORIGIN, "X-Client-ID": "chatplg-ui"},
        )
        assert title.status_code == 200
        assert title.headers["access-control-allow-origin"] == ORIGIN
        # An origin not configured gets no CORS grant.
        other = await http.options(
            "/api/chat/stream",
            headers={**_preflight("content-type"), "Origin": "http://evil.example"},
        )
        assert other.status_code == 400


async def test_cors_headers_and_methods_come_from_the_settings(fake_engine: FakeEngine) -> None:
    settings = gateway_settings(
        fake_engine.url, cors_origins=[ORIGIN], cors_headers=["Content-Type", "X-Tenant"],
        cors_methods=["GET", "POST"],
    )  # fmt: skip
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        ok = await http.options("/api/chat/stream", headers=_preflight("content-type,x-tenant"))
        assert ok.status_code == 200
        refused = await http.options("/api/chat/stream", headers=_preflight("x-client-id"))
        assert refused.status_code == 400
        delete = await http.options("/api/sessions/chat_abcdefgh", headers=_preflight(
            "content-type", method="DELETE"))  # fmt: skip
        assert delete.status_code == 400


def test_the_cors_settings_read_comma_lists() -> None:
    from llm_api.settings import Settings

    settings = Settings(cors_headers="X-A, X-B", cors_methods="GET,POST")
    assert settings.cors_headers == ["X-A", "X-B"]
    assert settings.cors_methods == ["GET", "POST"]
