"""Keys belong to people: own keys by cookie, scopes within the role, other people's keys
404, a disabled person's key 401 on the next request, existing keys migrated to users."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
from alembic import command
from sqlalchemy import create_engine, text

from llm_api.chat.store import open_store
from llm_api.db.migrate import alembic_config
from llm_api.people.store import PeopleStore
from llm_api.settings import Settings
from tests.auth.conftest import bearer, make_key
from tests.people.conftest import add_user, sign_in

PASSWORD = "סיסמה-ארוכה-1"


async def test_own_keys_are_private_scoped_by_role_and_stop_with_the_person(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    await add_user(settings, "boss", PASSWORD, role="admin")
    await add_user(settings, "alice", PASSWORD)
    await add_user(settings, "bob", PASSWORD)
    async with (
        httpx.AsyncClient(base_url=http.base_url) as alice,
        httpx.AsyncClient(base_url=http.base_url) as bob,
        httpx.AsyncClient(base_url=http.base_url) as boss,
    ):
        a = {"X-CSRF-Token": await sign_in(alice, "alice", PASSWORD)}
        b = {"X-CSRF-Token": await sign_in(bob, "bob", PASSWORD)}
        admin = {"X-CSRF-Token": await sign_in(boss, "boss", PASSWORD)}
        wide = await alice.post("/api/keys", json={"scopes": ["chat", "admin"]}, headers=a)
        assert wide.status_code == 403
        created = await alice.post("/api/keys", json={"scopes": ["chat"]}, headers=a)
        assert created.status_code == 201, created.text
        secret, key_id = created.json()["key"], created.json()["id"]
        listed = (await alice.get("/api/keys")).json()["keys"]
        assert [k["id"] for k in listed] == [key_id]
        assert "key" not in listed[0]
        assert (await bob.get("/api/keys")).json()["keys"] == []
        # Bob cannot revoke (or learn of) alice's key: the same 404 as a missing key.
        theirs = await bob.delete(f"/api/keys/{key_id}", headers=b)
        missing = await bob.delete("/api/keys/999999", headers=b)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()
        # The key sees alice's conversations (the same owner as her browser).
        assert (await http.get("/api/sessions", headers=bearer(secret))).status_code == 200
        all_keys = (await boss.get("/api/admin/keys")).json()["keys"]
        assert [k["owner"] for k in all_keys] == ["alice"]
        assert "key" not in all_keys[0]
        # Disabled: the key fails on the next request, as the cookie does.
        users = (await boss.get("/api/admin/users")).json()["users"]
        alice_id = next(u["id"] for u in users if u["username"] == "alice")
        await boss.patch(f"/api/admin/users/{alice_id}", json={"status": "disabled"}, headers=admin)
        assert (await http.get("/api/sessions", headers=bearer(secret))).status_code == 401
        assert (await alice.get("/api/keys")).status_code == 401
        await boss.patch(f"/api/admin/users/{alice_id}", json={"status": "active"}, headers=admin)
        assert (await http.get("/api/sessions", headers=bearer(secret))).status_code == 200
        a = {"X-CSRF-Token": await sign_in(alice, "alice", PASSWORD)}
        assert (await alice.delete(f"/api/keys/{key_id}", headers=a)).status_code == 204
        assert (await http.get("/api/sessions", headers=bearer(secret))).status_code == 401


async def test_operator_keys_belong_to_the_user_of_their_name(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """``llm-api keys create --name ops --scopes admin`` makes (or finds) user ``ops``; a
    demotion of that user narrows the key on its next request."""
    key = await make_key(settings, "ops", "chat,admin")
    assert (await http.get("/api/admin/users", headers=bearer(key))).status_code == 200
    store = await open_store(settings.database_url, settings.data_dir)
    try:
        people = PeopleStore(store.engine)
        ops = await people.by_username("ops")
        assert ops is not None
        assert ops.role == "admin"
        await people.update_user(ops.id, role="member")
    finally:
        await store.close()
    assert (await http.get("/api/admin/users", headers=bearer(key))).status_code == 403
    assert (await http.get("/api/sessions", headers=bearer(key))).status_code == 200


def test_existing_keys_are_migrated_to_users(tmp_path: Path) -> None:
    """A database at 0006 with operator keys: after 0007 every key has a user of its name
    (admin when a key had the admin scope) and keeps its hash, so it works on."""
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0006_people")
        now = datetime.now(UTC)
        for name, scopes, digest in (("ops", "admin,chat", b"a" * 32), ("רינה", "chat", b"b" * 32),
                                     ("ops", "chat", b"c" * 32)):  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO api_keys (name, key_hash, prefix, scopes, created_at, revoked)"
                    " VALUES (:n, :h, 'plg_x', :s, :t, 0)"
                ),
                {"n": name, "h": digest, "s": scopes, "t": now},
            )
        conn.execute(
            text(
                "INSERT INTO users (username, display_name, role, status, source, created_at)"
                " VALUES ('רינה', 'רינה כהן', 'member', 'active', 'ldap', :t)"
            ),
            {"t": now},
        )
        command.upgrade(alembic_config(conn), "0007_keys_belong_to_users")
        people = {r.username: r for r in conn.execute(text("SELECT * FROM users"))}
        keys = conn.execute(text("SELECT key_hash, user_id FROM api_keys ORDER BY id")).all()
    engine.dispose()
    assert set(people) == {"ops", "רינה"}
    assert people["ops"].role == "admin"
    assert people["רינה"].source == "ldap"  # the existing user is kept, not duplicated
    assert [k.user_id for k in keys] == [people["ops"].id, people["רינה"].id, people["ops"].id]
    assert [bytes(k.key_hash) for k in keys] == [b"a" * 32, b"b" * 32, b"c" * 32]
