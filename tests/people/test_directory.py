"""LDAP sign-in against a real OpenLDAP (Debian's slapd) on loopback, and the SSO proxy."""

from __future__ import annotations

import httpx

from llm_api.settings import Settings
from tests.conftest import serve_gateway
from tests.fakes import FakeEngine
from tests.people.conftest import Directory, add_user, people_settings, sign_in


def _ldap_settings(fake_engine: FakeEngine, slapd: Directory, **overrides: object) -> Settings:
    return people_settings(fake_engine.url, **slapd.settings(), **overrides)


async def _login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post("/api/auth/login", json={"username": username, "password": password})


async def test_directory_user_is_provisioned_with_groups_and_role(
    fake_engine: FakeEngine, slapd: Directory
) -> None:
    settings = _ldap_settings(fake_engine, slapd)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/api/auth/methods")).json()["ldap"] is True
        response = await _login(http, "dana", "dana-pass-123")
        assert response.status_code == 200, response.text
        dana = response.json()["user"]
        assert dana["source"] == "ldap"
        assert dana["display_name"] == "דנה לוי"
        assert dana["email"] == "dana@example.org"
        assert dana["groups"] == ["sales"]
        assert dana["role"] == "member"
        # A member of the admin group is an admin; the cookie reaches admin routes.
        async with httpx.AsyncClient(base_url=url) as other:
            yossi = (await _login(other, "yossi", "yossi-pass-456")).json()["user"]
            assert yossi["role"] == "admin"
            assert yossi["groups"] == ["llm-admins", "sales"]
            assert (await other.get("/api/admin/users")).status_code == 200
        # Second sign-in: the same row, not a second user.
        assert (await _login(http, "dana", "dana-pass-123")).json()["user"]["id"] == dana["id"]


async def test_wrong_password_unknown_user_and_injection_sign_in_nobody(
    fake_engine: FakeEngine, slapd: Directory
) -> None:
    settings = _ldap_settings(fake_engine, slapd)
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        refused = [
            await _login(http, "dana", "wrong-password"),
            await _login(http, "nobody", "dana-pass-123"),
            # Unescaped, this filter would be (uid=*)(uid=*) and match everyone.
            await _login(http, "*)(uid=*", "dana-pass-123"),
            await _login(http, "*", "dana-pass-123"),
            await _login(http, "dana)(|(uid=*", "dana-pass-123"),
        ]
        for response in refused:
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "invalid_credentials"
            assert "set-cookie" not in response.headers
        assert len({r.text for r in refused}) == 1
        # Nobody was provisioned by those attempts.
        await add_user(settings, "boss", "סיסמת-מנהל-99", role="admin")
        await sign_in(http, "boss", "סיסמת-מנהל-99")
        names = [u["username"] for u in (await http.get("/api/admin/users")).json()["users"]]
        assert names == ["boss"]


async def test_a_local_user_is_not_signed_in_by_the_directory(
    fake_engine: FakeEngine, slapd: Directory
) -> None:
    """A local account named like a directory entry keeps its own password only."""
    settings = _ldap_settings(fake_engine, slapd)
    await add_user(settings, "dana", "מקומית-בלבד-1")
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await _login(http, "dana", "dana-pass-123")).status_code == 401
        assert (await _login(http, "dana", "מקומית-בלבד-1")).status_code == 200


async def test_directory_unreachable_is_503_not_a_refusal(fake_engine: FakeEngine) -> None:
    settings = people_settings(
        fake_engine.url, ldap_url="ldap://127.0.0.1:1", ldap_user_base="dc=x", ldap_timeout=1
    )
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await _login(http, "dana", "dana-pass-123")
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "directory_unavailable"


async def test_proxy_header_is_honoured_only_from_configured_addresses(
    fake_engine: FakeEngine,
) -> None:
    headers = {
        b"X-Forwarded-User": b"miri",
        b"X-Forwarded-Email": b"miri@example.org",
        b"X-Forwarded-Groups": "משפטית, sales".encode(),
    }  # fmt: skip
    proxy = {
        "proxy_user_header": "X-Forwarded-User",
        "proxy_email_header": "X-Forwarded-Email",
        "proxy_groups_header": "X-Forwarded-Groups",
    }
    allowed = people_settings(fake_engine.url, proxy_addresses=["127.0.0.0/8"], **proxy)
    async with serve_gateway(allowed) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/api/auth/methods")).json()["proxy"] is True
        me = await http.get("/api/auth/me", headers=headers)
        assert me.status_code == 200, me.text
        user = me.json()["user"]
        assert user["username"] == "miri"
        assert user["source"] == "proxy"
        assert user["groups"] == ["sales", "משפטית"]
        assert "llm_api_session" in http.cookies
        # The cookie now works for the API; a different name from the proxy ends it.
        assert (await http.get("/api/sessions", headers=headers)).status_code == 200
        other = {**headers, b"X-Forwarded-User": b"someone-else"}
        assert (await http.get("/api/sessions", headers=other)).status_code == 401

    # Same header from an address that is not the proxy's: ignored entirely.
    denied = people_settings(fake_engine.url, proxy_addresses=["10.9.8.7/32"], **proxy)
    async with serve_gateway(denied) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/api/auth/me", headers=headers)).status_code == 401
        assert (await http.get("/api/sessions", headers=headers)).status_code == 401
        assert "llm_api_session" not in http.cookies
