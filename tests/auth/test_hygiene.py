"""Security headers, CORS, trusted hosts, docs in prod, and a canary that must never leak."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.auth.conftest import bearer, make_key, secured_settings
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine

CANARY_KEY = "plg_CANARYkeyCANARYkeyCANARYkeyCANARYkey0001"
CANARY_SENTENCE = "הקנרית הצהובה שרה בחצות ליד מגדל המים"
CANARY_EMAIL = "canary.bird.7731@example.org"
CANARIES = (CANARY_KEY, CANARY_SENTENCE, CANARY_EMAIL)


async def test_security_headers_on_every_answer(fake_engine: FakeEngine) -> None:
    settings = gateway_settings(fake_engine.url, max_body_bytes=2048)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        answers = [
            await http.get("/ping"),
            await http.get("/api/health"),
            await http.get("/no/such/route"),
            await http.post("/api/chat/stream", json={"messages": []}),
            await http.post("/api/chat/stream", content=b"x" * 4096),
            await http.post(
                "/api/chat/stream", json={"messages": [{"role": "user", "content": "שלום"}]}
            ),
            await http.get("/metrics"),
        ]
        assert [a.status_code for a in answers] == [200, 200, 404, 422, 413, 200, 200]
        for answer in answers:
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["cache-control"] == "no-store"
            assert answer.headers["content-security-policy"] == (
                "default-src 'none'; frame-ancestors 'none'"
            )
        docs = await http.get("/docs")
        assert docs.status_code == 200
        assert docs.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in docs.headers  # the page loads its own scripts


async def test_docs_are_off_in_prod_unless_enabled(fake_engine: FakeEngine) -> None:
    for enabled, expected in ((None, 404), (True, 200)):
        settings = secured_settings(fake_engine.url, mode="prod", docs_enabled=enabled)
        async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/docs")).status_code == expected
            assert (await http.get("/openapi.json")).status_code == expected


async def test_cors_allowlist_and_never_wildcard_with_credentials(fake_engine: FakeEngine) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    settings = gateway_settings(fake_engine.url, cors_origins=["https://app.example"])
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        ok = await http.options(
            "/api/chat/stream", headers={**preflight, "Origin": "https://app.example"}
        )
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        assert ok.headers["access-control-allow-credentials"] == "true"
        evil = await http.options(
            "/api/chat/stream", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in evil.headers
    settings = gateway_settings(fake_engine.url, cors_origins=["*"])
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        any_origin = await http.get("/ping", headers={"Origin": "https://evil.example"})
        assert any_origin.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in any_origin.headers


async def test_trusted_hosts(fake_engine: FakeEngine) -> None:
    settings = gateway_settings(fake_engine.url, trusted_hosts=["api.example", "127.0.0.1"])
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/ping")).status_code == 200
        assert (await http.get("/ping", headers={"Host": "api.example"})).status_code == 200
        forged = await http.get("/ping", headers={"Host": "evil.example"})
        assert forged.status_code == 400
        assert forged.headers["x-content-type-options"] == "nosniff"


def _leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_canary_never_reaches_logs_metrics_or_error_bodies(
    fake_engine: FakeEngine, capfd: pytest.CaptureFixture[str], log_format: str
) -> None:
    settings = secured_settings(
        fake_engine.url, log_level="DEBUG", log_format=log_format, max_body_bytes=4096
    )
    key = await make_key(settings, "canary-user")
    content = f"{CANARY_SENTENCE}. כתבו לי ל-{CANARY_EMAIL}"
    messages = [{"role": "user", "content": content}]
    email = f"From: {CANARY_EMAIL}\nSubject: {CANARY_SENTENCE}\n\n{CANARY_SENTENCE}"
    bodies = {
        "/api/chat/stream": {"messages": messages},
        "/v1/chat/completions": {"model": "default", "messages": messages},
        "/api/tasks/extract": {"email_content": email},
        "/api/summarization/summarize": {"email_content": email, "length": 50},
        "/api/title/generate": {"user_message": content},
    }
    error_bodies: list[str] = []
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        # A canary key on every route and both headers: 401s.
        for path, body in bodies.items():
            for headers in (bearer(CANARY_KEY), {"X-API-Key": CANARY_KEY}):
                response = await http.post(path, json=body, headers=headers)
                assert response.status_code == 401
                error_bodies.append(response.text)
        for path in ("/api/sessions", "/v1/models", "/metrics", "/api/metrics"):
            response = await http.get(path, headers=bearer(CANARY_KEY))
            assert response.status_code == 401
            error_bodies.append(response.text)
        auth = bearer(key)
        # Successful calls (the model's garbage answers to the email routes become errors).
        for path, body in bodies.items():
            response = await http.post(path, json=body, headers=auth)
            if response.status_code >= 400:
                error_bodies.append(response.text)
        session_id = (
            await http.post("/api/chat/stream", json=bodies["/api/chat/stream"], headers=auth)
        ).headers["x-session-id"]
        # Invalid input carrying the canary.
        for path, body in (
            ("/api/chat/stream", {"messages": messages, "language": CANARY_SENTENCE}),
            ("/api/chat/stream", {"messages": [{"role": CANARY_EMAIL, "content": content}]}),
            ("/api/chat/stream", {"messages": messages, "session_id": CANARY_EMAIL}),
            ("/v1/chat/completions", {"model": "default", "messages": CANARY_SENTENCE}),
            ("/v1/chat/completions", {"model": CANARY_SENTENCE, "messages": messages}),
            ("/api/summarization/summarize", {"email_content": email, "length": CANARY_EMAIL}),
            ("/api/chat/stream", {"messages": [{"role": "user", "content": content * 200}]}),
        ):
            response = await http.post(path, json=body, headers=auth)
            assert response.status_code in (400, 404, 413, 422), (path, response.text)
            error_bodies.append(response.text)
        response = await http.patch(f"/api/sessions/{session_id}", json={"title": ""}, headers=auth)
        error_bodies.append(response.text)
        # Engine failures, before and after the first byte.
        fake_engine.state.fail_status = 500
        fake_engine.state.fail_message = "engine says no"
        for path, body in bodies.items():
            response = await http.post(path, json=body, headers=auth)
            assert response.status_code >= 400
            error_bodies.append(response.text)
        fake_engine.state.fail_status = None
        fake_engine.state.error_after = 2
        response = await http.post(
            "/api/chat/stream", json=bodies["/api/chat/stream"], headers=auth
        )
        assert '"type":"error"' in response.text
        fake_engine.state.error_after = None
        # A disconnect mid-stream.
        fake_engine.state.chunk_delay = 0.1
        async with http.stream(
            "POST", "/api/chat/stream", json=bodies["/api/chat/stream"], headers=auth
        ) as stream:
            async for _ in stream.aiter_bytes():
                break
        await asyncio.sleep(0.5)
        fake_engine.state.chunk_delay = 0.0
        metrics = (await http.get("/metrics", headers=auth)).text
        api_metrics = (await http.get("/api/metrics", headers=auth)).text
    assert len(fake_engine.state.requests) > 5  # the canary did reach the engine
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert "llm_api.access" in logs or "POST /api/chat/stream" in logs  # logs were captured
    assert _leaks(logs) == []
    assert _leaks(metrics) == []
    assert _leaks(api_metrics) == []
    for body in error_bodies:
        assert _leaks(body) == [], body
    assert error_bodies
