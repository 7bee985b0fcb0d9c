"""Local sign-in, browser sessions, CSRF, expiry, revocation, disabled users, brute force."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
from sqlalchemy import update

from llm_api.chat.store import open_store, utcnow
from llm_api.people.tables import browser_sessions
from llm_api.settings import Settings
from tests.conftest import serve_gateway
from tests.fakes import FakeEngine
from tests.people.conftest import add_user, people_settings, sign_in

PASSWORD = "סיסמה-ארוכה-1"
CHAT = {"messages": [{"role": "user", "content": "שלום"}]}


async def _with_cookie(http: httpx.AsyncClient, token: str, path: str) -> httpx.Response:
    """GET ``path`` from a fresh client presenting only this session cookie."""
    headers = {"Cookie": f"llm_api_session={token}"}
    async with httpx.AsyncClient(base_url=http.base_url, headers=headers) as bare:
        return await bare.get(path)


async def test_methods_are_public(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/auth/methods")
    assert response.json() == {"local": True, "ldap": False, "proxy": False}


async def test_sign_in_sets_a_strict_cookie_and_me_answers(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    await add_user(settings, "rina", PASSWORD)
    response = await http.post("/api/auth/login", json={"username": "rina", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == "rina"
    assert body["user"]["role"] == "member"
    assert body["user"]["source"] == "local"
    assert body["user"]["last_login_at"]
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("llm_api_session=")
    lowered = cookie.lower()
    for flag in ("httponly", "samesite=lax", "path=/"):
        assert flag in lowered
    assert "secure" not in lowered  # plain HTTP, not configured
    me = await http.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json() == {"user": me.json()["user"], "csrf_token": body["csrf_token"]}
    # The cookie signs in chat too: a member may chat, not administer.
    assert (await http.get("/api/sessions")).status_code == 200
    assert (await http.get("/api/admin/users")).status_code == 403


async def test_cookie_is_secure_when_configured(fake_engine: FakeEngine) -> None:
    settings = people_settings(fake_engine.url, cookie_secure=True)
    await add_user(settings, "rina", PASSWORD)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post(
            "/api/auth/login", json={"username": "rina", "password": PASSWORD}
        )
        assert "secure" in response.headers["set-cookie"].lower()


async def test_unknown_user_and_wrong_password_look_the_same(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    await add_user(settings, "rina", PASSWORD)
    timings: dict[str, list[float]] = {"wrong": [], "unknown": []}
    bodies = {}
    for _ in range(4):
        for kind, name in (("wrong", "rina"), ("unknown", "nobody")):
            started = time.perf_counter()
            response = await http.post(
                "/api/auth/login", json={"username": name, "password": "לא-נכון-בכלל"}
            )
            timings[kind].append(time.perf_counter() - started)
            assert response.status_code == 401
            assert "set-cookie" not in response.headers
            bodies[kind] = response.json()
    assert bodies["wrong"] == bodies["unknown"]
    assert bodies["wrong"]["error"]["code"] == "invalid_credentials"
    # Both pay one Argon2id verification: medians within a factor of two.
    wrong, unknown = sorted(timings["wrong"])[2], sorted(timings["unknown"])[2]
    assert 0.5 < wrong / unknown < 2.0, timings


async def test_over_long_or_malformed_username_is_422(http: httpx.AsyncClient) -> None:
    for name in ("א" * 65, "bad\x00name", ""):
        response = await http.post("/api/auth/login", json={"username": name, "password": "x"})
        assert response.status_code == 422, name


async def test_writes_by_cookie_need_the_csrf_token_and_our_origin(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    await add_user(settings, "rina", PASSWORD)
    csrf = await sign_in(http, "rina", PASSWORD)
    missing = await http.post("/api/chat/stream", json=CHAT)
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "csrf_failed"
    wrong = await http.post("/api/chat/stream", json=CHAT, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    evil = await http.post(
        "/api/chat/stream",
        json=CHAT,
        headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
    )
    assert evil.status_code == 403
    own = str(http.base_url).rstrip("/")
    ok = await http.post(
        "/api/chat/stream", json=CHAT, headers={"X-CSRF-Token": csrf, "Origin": own}
    )
    assert ok.status_code == 200
    # A cross-site sign-in is refused too (login CSRF).
    cross = await http.post(
        "/api/auth/login",
        json={"username": "rina", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403


async def test_sign_in_issues_a_new_session_id_and_revokes_the_old(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    await add_user(settings, "rina", PASSWORD)
    await sign_in(http, "rina", PASSWORD)
    first = http.cookies["llm_api_session"]
    await sign_in(http, "rina", PASSWORD)
    second = http.cookies["llm_api_session"]
    assert first != second
    assert (await _with_cookie(http, first, "/api/auth/me")).status_code == 401
    assert (await _with_cookie(http, second, "/api/auth/me")).status_code == 200


async def test_logout_revokes_the_session(http: httpx.AsyncClient, settings: Settings) -> None:
    await add_user(settings, "rina", PASSWORD)
    csrf = await sign_in(http, "rina", PASSWORD)
    token = http.cookies["llm_api_session"]
    assert (await http.post("/api/auth/logout")).status_code == 403  # no CSRF token
    response = await http.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert (await _with_cookie(http, token, "/api/sessions")).status_code == 401
    assert (await _with_cookie(http, token, "/api/auth/me")).status_code == 401


async def test_idle_and_absolute_expiry(http: httpx.AsyncClient, settings: Settings) -> None:
    await add_user(settings, "rina", PASSWORD)
    store = await open_store(settings.database_url, settings.data_dir)
    try:
        for column in ("last_seen_at", "expires_at"):
            await sign_in(http, "rina", PASSWORD)
            assert (await http.get("/api/auth/me")).status_code == 200
            past = utcnow() - timedelta(hours=settings.session_absolute_hours)
            async with store.engine.begin() as conn:
                await conn.execute(update(browser_sessions).values({column: past}))
            assert (await http.get("/api/auth/me")).status_code == 401, column
            assert (await http.get("/api/sessions")).status_code == 401, column
    finally:
        await store.close()


async def test_a_disabled_user_is_out_on_the_next_request(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    await add_user(settings, "boss", PASSWORD, role="admin")
    await add_user(settings, "rina", PASSWORD)
    async with httpx.AsyncClient(base_url=http.base_url) as admin:
        admin_csrf = await sign_in(admin, "boss", PASSWORD)
        await sign_in(http, "rina", PASSWORD)
        assert (await http.get("/api/sessions")).status_code == 200
        users = (await admin.get("/api/admin/users")).json()["users"]
        rina = next(u for u in users if u["username"] == "rina")
        changed = await admin.patch(
            f"/api/admin/users/{rina['id']}",
            json={"status": "disabled"},
            headers={"X-CSRF-Token": admin_csrf},
        )
        assert changed.status_code == 200
        assert changed.json()["status"] == "disabled"
    assert (await http.get("/api/sessions")).status_code == 401
    again = await http.post("/api/auth/login", json={"username": "rina", "password": PASSWORD})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "invalid_credentials"


async def test_brute_force_is_limited_per_username_and_per_address(fake_engine: FakeEngine) -> None:
    settings = people_settings(
        fake_engine.url, login_attempts_per_user=3, login_attempts_per_address=5
    )
    await add_user(settings, "rina", PASSWORD)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        for _ in range(3):
            bad = await http.post("/api/auth/login", json={"username": "rina", "password": "x"})
            assert bad.status_code == 401
        # The fourth attempt is refused even with the right password.
        over = await http.post("/api/auth/login", json={"username": "rina", "password": PASSWORD})
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "too_many_attempts"
        assert int(over.headers["retry-after"]) > 0
        # Other names from the same address: the per-address limit (5) stops the sixth.
        assert (
            await http.post("/api/auth/login", json={"username": "a1", "password": "x"})
        ).status_code == 401
        over_address = await http.post("/api/auth/login", json={"username": "a2", "password": "x"})
        assert over_address.status_code == 429


async def test_password_is_rehashed_when_the_parameters_change(fake_engine: FakeEngine) -> None:
    weak = people_settings(fake_engine.url)
    await add_user(weak, "rina", PASSWORD)
    stronger = people_settings(fake_engine.url, argon2_time_cost=2)
    async with serve_gateway(stronger) as url, httpx.AsyncClient(base_url=url) as http:
        await sign_in(http, "rina", PASSWORD)
    store = await open_store(stronger.database_url, stronger.data_dir)
    try:
        from llm_api.people.store import PeopleStore

        user = await PeopleStore(store.engine).by_username("rina")
        assert user is not None
        assert "t=2" in (user.password_hash or "")
    finally:
        await store.close()
