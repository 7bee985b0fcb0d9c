"""Keys on every route: 401/403, one code path for both headers, revocation, ownership."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.routing import APIRoute

from llm_api.app import create_app
from llm_api.settings import Settings
from tests.auth.conftest import bearer, make_key, revoke_key, secured_settings
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine
from tests.sse import parse_events

HEBREW = "שלום, מה שלומך היום?"
CHAT = {"messages": [{"role": "user", "content": HEBREW}]}
ALLOWLIST = {"/ping", "/api/health"}
# Who may call each route that is not a key-scope route: anyone, or a browser session.
PUBLIC = {"/api/auth/methods", "/api/auth/login", "/api/auth/me", "/", "/assets/{name}"}
SIGNED_IN = {"/api/auth/logout", "/api/keys", "/api/keys/{key_id}"}
DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def _guards(dependencies: list[Any]) -> set[str]:
    found = set()
    for dep in dependencies:
        call = getattr(dep, "dependency", None) or getattr(dep, "call", None)
        scope = getattr(call, "required_scope", None)
        if scope:
            found.add(scope)
    return found


def _routes(routes: list[Any]) -> Iterator[tuple[str, set[str], bool]]:
    """(path, guards, is_api_route) for every route, through included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route.path, _guards(route.dependant.dependencies), True
        elif hasattr(route, "effective_candidates"):  # FastAPI >= 0.16x keeps routers nested
            for item in route.effective_candidates():
                if hasattr(item, "effective_candidates"):
                    yield from _routes([item])
                elif isinstance(item.original_route, APIRoute):
                    yield item.path, _guards(item.dependencies), True
                else:
                    yield item.path, set(), False
        else:
            yield getattr(route, "path", repr(route)), set(), False


def test_every_route_is_protected_or_allowlisted(fake_engine: FakeEngine) -> None:
    for mode, docs in (("default", DOCS), ("prod", set())):
        app = create_app(secured_settings(fake_engine.url, mode=mode))
        seen = set()
        for path, guards, api in _routes(list(app.routes)):
            seen.add(path)
            if not api:
                assert path in docs, f"{path} is neither protected nor allowlisted ({mode})"
            elif path in ALLOWLIST:
                assert guards == {"any"}, path  # health_access decides
            elif path in PUBLIC:
                assert guards == {"public"}, path
            elif path in SIGNED_IN:
                assert guards == {"signed_in"}, path
            elif path.startswith("/api/admin/"):
                assert guards == {"admin"}, path
            else:
                assert guards & {"chat", "email", "admin"}, f"{path} has no scope check"
        assert {"/api/chat/stream", "/api/sessions", "/metrics", "/v1/models"} <= seen
        assert docs <= seen


async def test_every_schema_operation_answers_401_without_a_key(
    http: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    schema = (await http.get("/openapi.json")).json()
    checked = 0
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "chat_abcdefghijkl", path)
        for method in operations:
            response = await http.request(method.upper(), concrete, json={})
            # /api/auth/login answers 422 to an empty body before any credential is seen.
            expected = {"/api/auth/methods": 200, "/api/auth/login": 422}.get(
                path, 200 if path in ALLOWLIST else 401
            )
            assert response.status_code == expected, (method, path, response.text)
            checked += 1
    assert checked >= 30
    assert [r for r in fake_engine.state.requests if "messages" in r] == []


async def test_missing_forged_and_revoked_keys_get_401_and_never_reach_the_engine(
    http: httpx.AsyncClient, settings: Settings, fake_engine: FakeEngine
) -> None:
    key = await make_key(settings, "alice")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for headers in ({}, bearer(forged), {"X-API-Key": forged}, {"Authorization": "Basic eDp5"}):
        response = await http.post("/api/chat/stream", json=CHAT, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"
    assert fake_engine.state.requests == []

    # Same kept-alive connection: works, then the key is revoked, then the next request fails.
    assert (await http.get("/api/sessions", headers=bearer(key))).status_code == 200
    assert (await http.get("/api/sessions", headers={"X-API-Key": key})).status_code == 200
    await revoke_key(settings, "alice")
    assert (await http.get("/api/sessions", headers=bearer(key))).status_code == 401
    assert (await http.get("/api/sessions", headers={"X-API-Key": key})).status_code == 401


async def test_two_different_keys_in_one_request_are_refused(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_key(settings, "alice")
    bob = await make_key(settings, "bob")
    response = await http.get("/api/sessions", headers={**bearer(alice), "X-API-Key": bob})
    assert response.status_code == 401
    both = {**bearer(alice), "X-API-Key": alice}
    assert (await http.get("/api/sessions", headers=both)).status_code == 200


async def test_scopes_per_router(
    http: httpx.AsyncClient, settings: Settings, fake_engine: FakeEngine
) -> None:
    chat_only = await make_key(settings, "chatter", "chat")
    email_only = await make_key(settings, "mailer", "email")
    admin = await make_key(settings, "ops", "admin")
    email_body = {"user_message": HEBREW}
    cases = [
        (chat_only, "GET", "/api/sessions", None, 200),
        (chat_only, "GET", "/v1/models", None, 200),
        (chat_only, "POST", "/api/title/generate", email_body, 403),
        (chat_only, "GET", "/metrics", None, 403),
        (chat_only, "GET", "/api/metrics", None, 403),
        (email_only, "POST", "/api/chat/stream", CHAT, 403),
        (email_only, "GET", "/api/sessions", None, 403),
        (email_only, "GET", "/v1/models", None, 403),
        (admin, "GET", "/metrics", None, 200),
        (admin, "GET", "/api/metrics", None, 200),
        (admin, "POST", "/api/chat/stream", CHAT, 403),
    ]
    for key, method, path, body, status in cases:
        response = await http.request(method, path, json=body, headers=bearer(key))
        assert response.status_code == status, (path, response.text)
        if status == 403:
            assert response.json()["error"]["type"] == "permission_error"
    assert [r for r in fake_engine.state.requests if "messages" in r] == []


async def test_open_routes(http: httpx.AsyncClient) -> None:
    assert (await http.get("/ping")).status_code == 200
    assert (await http.get("/api/health")).status_code == 200


async def test_private_health(fake_engine: FakeEngine) -> None:
    settings = secured_settings(fake_engine.url, public_health=False)
    key = await make_key(settings, "monitor", "admin")
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/ping")).status_code == 200
        assert (await http.get("/api/health")).status_code == 401
        assert (await http.get("/api/health", headers=bearer(key))).status_code == 200


async def test_another_keys_session_is_404_exactly_like_a_missing_one(
    http: httpx.AsyncClient, settings: Settings, fake_engine: FakeEngine
) -> None:
    alice = await make_key(settings, "alice", "chat")
    bob = await make_key(settings, "bob", "chat")
    response = await http.post("/api/chat/stream", json=CHAT, headers=bearer(alice))
    assert response.status_code == 200
    session_id = response.headers["x-session-id"]
    assert parse_events(response.text)[-1]["type"] == "done"
    missing = "chat_" + "x" * 22

    for method, suffix, body in (
        ("GET", "", None),
        ("PATCH", "", {"title": "גנוב"}),
        ("GET", "/export", None),
        ("DELETE", "", None),
    ):
        theirs = await http.request(
            method, f"/api/sessions/{session_id}{suffix}", json=body, headers=bearer(bob)
        )
        absent = await http.request(
            method, f"/api/sessions/{missing}{suffix}", json=body, headers=bearer(bob)
        )
        assert theirs.status_code == absent.status_code == 404
        assert theirs.json() == absent.json()
    listed = (await http.get("/api/sessions", headers=bearer(bob))).json()
    assert listed["sessions"] == []

    # Chat with alice's session id: bob starts his own conversation, as with an unknown id;
    # nothing of alice's reaches the engine and her session is unchanged.
    fake_engine.state.requests.clear()
    second = {"messages": [{"role": "user", "content": "ומה איתך?"}], "session_id": session_id}
    response = await http.post("/api/chat/stream", json=second, headers=bearer(bob))
    assert response.status_code == 200
    sent = fake_engine.state.requests[-1]["messages"]
    assert all(HEBREW not in m["content"] for m in sent)
    mine = (await http.get(f"/api/sessions/{session_id}", headers=bearer(alice))).json()
    assert mine["messages"][0]["content"] == HEBREW
    assert len(mine["messages"]) == 2


async def test_auth_disabled_keeps_the_seed_curl_examples_working(
    fake_engine: FakeEngine,
) -> None:
    settings = gateway_settings(fake_engine.url)
    assert not settings.auth_required
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/api/chat/stream", json=CHAT)
        assert response.status_code == 200
        assert parse_events(response.text)[-1]["type"] == "done"
        assert (await http.get("/api/metrics")).status_code == 200


def test_auth_default_follows_the_mode() -> None:
    assert Settings(mode="prod").auth_required
    assert not Settings(mode="dev").auth_required
    assert not Settings().auth_required
    assert not Settings(mode="prod", auth="disabled").auth_required
    assert Settings(auth="required").auth_required
    assert not Settings(mode="prod").docs_on
    assert Settings(mode="prod", docs_enabled=True).docs_on
