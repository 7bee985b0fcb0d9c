"""Members never see each other's conversations (both databases); the admin API; the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from llm_api.db.engine import database_url
from tests.chat.conftest import pg_admin
from tests.conftest import REPO, serve_gateway
from tests.fakes import FakeEngine
from tests.people.conftest import FAST_ARGON, add_user, people_settings, sign_in
from tests.sse import parse_events

PASSWORD = "סיסמה-ארוכה-1"
HEBREW = "מה התחזית למחר בתל אביב?"


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield database_url(None, tmp_path / "store")
        return
    name = f"llm_api_people_{uuid.uuid4().hex[:12]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_member_b_cannot_read_change_or_learn_of_member_a_s_conversations(
    fake_engine: FakeEngine, any_database: str
) -> None:
    settings = people_settings(fake_engine.url, database_url=any_database)
    await add_user(settings, "alice", PASSWORD)
    await add_user(settings, "bob", PASSWORD)
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url) as alice,
        httpx.AsyncClient(base_url=url) as bob,
    ):
        alice_csrf = await sign_in(alice, "alice", PASSWORD)
        bob_csrf = await sign_in(bob, "bob", PASSWORD)
        chat = {"messages": [{"role": "user", "content": HEBREW}]}
        response = await alice.post(
            "/api/chat/stream", json=chat, headers={"X-CSRF-Token": alice_csrf}
        )
        assert response.status_code == 200
        assert parse_events(response.text)[-1]["type"] == "done"
        session_id = response.headers["x-session-id"]
        missing = "chat_" + "x" * 22
        for method, suffix, body in (
            ("GET", "", None),
            ("PATCH", "", {"title": "גנוב"}),
            ("GET", "/export", None),
            ("DELETE", "", None),
        ):
            csrf = {"X-CSRF-Token": bob_csrf}
            theirs = await bob.request(
                method, f"/api/sessions/{session_id}{suffix}", json=body, headers=csrf
            )
            absent = await bob.request(
                method, f"/api/sessions/{missing}{suffix}", json=body, headers=csrf
            )
            assert theirs.status_code == absent.status_code == 404, (method, theirs.text)
            assert theirs.json() == absent.json()
        assert (await bob.get("/api/sessions")).json()["sessions"] == []
        searched = await bob.get("/api/sessions", params={"q": "התחזית"})
        assert searched.json()["sessions"] == []
        mine = await alice.get(f"/api/sessions/{session_id}")
        assert mine.status_code == 200
        assert mine.json()["messages"][0]["content"] == HEBREW


async def _check_audit(admin: httpx.AsyncClient) -> None:
    """The trail of the admin test: pages, filters, export, no secrets."""
    first = (await admin.get("/api/admin/audit", params={"limit": 3})).json()
    assert len(first["items"]) == 3
    assert first["next_cursor"] is not None
    rest = (await admin.get("/api/admin/audit", params={"cursor": first["next_cursor"]})).json()
    assert rest["next_cursor"] is None
    every = first["items"] + rest["items"]
    ids = [i["id"] for i in every]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == len(ids)
    actions = {i["action"] for i in every}
    assert {"sign_in", "user_created", "group_created", "member_added", "user_updated",
            "member_removed", "group_deleted"} <= actions  # fmt: skip
    by_actor = (await admin.get("/api/admin/audit", params={"action": "user_created"})).json()
    assert [i["target"] for i in by_actor["items"]] == ["noa"]
    assert all(i["request_id"] for i in every)
    assert {i["actor"] for i in every} == {"boss", "rina", "noa"}
    export = await admin.get("/api/admin/audit/export")
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in export.content.splitlines()]
    assert [line["id"] for line in lines] == ids
    # No secrets in the trail.
    assert "נועה-סיסמה-7" not in export.text
    assert PASSWORD not in export.text
    assert "argon2" not in export.text


async def test_admin_manages_users_groups_and_reads_the_audit_trail(
    fake_engine: FakeEngine,
) -> None:
    settings = people_settings(fake_engine.url)
    await add_user(settings, "boss", PASSWORD, role="admin")
    await add_user(settings, "rina", PASSWORD)
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url) as admin,
        httpx.AsyncClient(base_url=url) as member,
    ):
        csrf = {"X-CSRF-Token": await sign_in(admin, "boss", PASSWORD)}
        member_csrf = {"X-CSRF-Token": await sign_in(member, "rina", PASSWORD)}
        for method, path in (
            ("GET", "/api/admin/users"),
            ("POST", "/api/admin/users"),
            ("PATCH", "/api/admin/users/1"),
            ("GET", "/api/admin/groups"),
            ("POST", "/api/admin/groups"),
            ("PATCH", "/api/admin/groups/1"),
            ("DELETE", "/api/admin/groups/1"),
            ("PUT", "/api/admin/groups/1/members/1"),
            ("DELETE", "/api/admin/groups/1/members/1"),
            ("GET", "/api/admin/audit"),
            ("GET", "/api/admin/audit/export"),
        ):
            response = await member.request(method, path, json={}, headers=member_csrf)
            assert response.status_code == 403, (method, path, response.text)

        created = await admin.post(
            "/api/admin/users",
            json={"username": "noa", "password": "נועה-סיסמה-7", "display_name": "נועה"},
            headers=csrf,
        )
        assert created.status_code == 201, created.text
        noa = created.json()
        assert noa["display_name"] == "נועה"
        weak = await admin.post(
            "/api/admin/users", json={"username": "weak", "password": "short"}, headers=csrf
        )
        assert weak.status_code == 422
        group = await admin.post("/api/admin/groups", json={"name": "כספים"}, headers=csrf)
        assert group.status_code == 201
        gid = group.json()["id"]
        put = await admin.put(f"/api/admin/groups/{gid}/members/{noa['id']}", headers=csrf)
        assert put.status_code == 204
        users = (await admin.get("/api/admin/users")).json()["users"]
        assert next(u for u in users if u["username"] == "noa")["groups"] == ["כספים"]
        promoted = await admin.patch(
            f"/api/admin/users/{noa['id']}", json={"role": "admin"}, headers=csrf
        )
        assert promoted.json()["role"] == "admin"
        async with httpx.AsyncClient(base_url=url) as noa_client:
            await sign_in(noa_client, "noa", "נועה-סיסמה-7")
            assert (await noa_client.get("/api/admin/users")).status_code == 200
        gone = await admin.delete(f"/api/admin/groups/{gid}/members/{noa['id']}", headers=csrf)
        assert gone.status_code == 204
        assert (await admin.delete(f"/api/admin/groups/{gid}", headers=csrf)).status_code == 204
        assert (await admin.delete(f"/api/admin/groups/{gid}", headers=csrf)).status_code == 404

        await _check_audit(admin)


async def test_cli_creates_the_first_admin_from_stdin_only(
    fake_engine: FakeEngine, tmp_path: Path
) -> None:
    settings = people_settings(fake_engine.url, data_dir=tmp_path / "cli")
    env = {"LLM_API_DATA_DIR": str(tmp_path / "cli"), "PATH": "/usr/bin:/bin",
           "LLM_API_ARGON2_TIME_COST": str(FAST_ARGON["argon2_time_cost"]),
           "LLM_API_ARGON2_MEMORY_KIB": str(FAST_ARGON["argon2_memory_kib"])}  # fmt: skip
    command = [sys.executable, "-m", "llm_api.cli", "users", "create", "root", "--admin"]
    done = await asyncio.to_thread(
        subprocess.run, command, input="מנהל-ראשי-2026\n", capture_output=True, text=True,
        env=env, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "created admin root" in done.stdout
    short = await asyncio.to_thread(
        subprocess.run, [*command[:-2], "other"], input="short\n", capture_output=True,
        text=True, env=env, cwd=REPO, check=False,
    )  # fmt: skip
    assert short.returncode == 2
    assert "at least" in short.stderr
    # There is no flag to pass a password on the command line.
    with_flag = await asyncio.to_thread(
        subprocess.run, [*command, "--password", "x"], capture_output=True, text=True,
        env=env, cwd=REPO, check=False,
    )  # fmt: skip
    assert with_flag.returncode == 2
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        await sign_in(http, "root", "מנהל-ראשי-2026")
        me = (await http.get("/api/auth/me")).json()["user"]
        assert me["role"] == "admin"


def test_an_active_admin_user_is_enough_for_prod_to_start(fake_engine: FakeEngine) -> None:
    from llm_api.auth.keys import active_key_count

    settings = people_settings(fake_engine.url)
    assert active_key_count(settings) == 0
    asyncio.run(add_user(settings, "member", PASSWORD))
    assert active_key_count(settings) == 0
    asyncio.run(add_user(settings, "root", PASSWORD, role="admin", status="disabled"))
    assert active_key_count(settings) == 0
    asyncio.run(add_user(settings, "root2", PASSWORD, role="admin"))
    assert active_key_count(settings) == 1
