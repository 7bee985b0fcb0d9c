"""The key store and ``llm-api keys``: hashes only, printed once, revocation, bad input."""

from __future__ import annotations

import hashlib

import pytest

from llm_api.auth.keys import KeyAdminError, KeyStore, parse_scopes
from llm_api.chat.store import SQLITE_FILE, open_store
from llm_api.cli import main
from llm_api.settings import Settings


async def test_store_keeps_a_hash_and_a_prefix_never_the_key() -> None:
    settings = Settings()
    store = await open_store(settings.database_url, settings.data_dir)
    try:
        keys = KeyStore(store.db)
        raw, key = await keys.create("דנה", frozenset({"chat"}), rpm=10, max_streams=2)
        assert raw.startswith("plg_")
        assert len(raw) >= 40
        assert key.prefix == raw[:12]
        verified = await keys.verify(raw)
        assert verified is not None
        assert verified.name == "דנה"
        assert verified.scopes == frozenset({"chat"})
        assert (verified.rpm, verified.max_streams) == (10, 2)
        assert await keys.verify(raw[:-1] + ("x" if raw[-1] != "x" else "y")) is None
        assert await keys.verify("not-a-key") is None
        assert await keys.verify("") is None
        with pytest.raises(KeyAdminError):
            await keys.create("דנה", frozenset({"chat"}))
        assert await keys.revoke("דנה") == 1
        assert await keys.verify(raw) is None
        again, _ = await keys.create("דנה", frozenset({"chat", "email"}))
        assert (await keys.verify(again)) is not None
        assert await keys.active_count() == 1
    finally:
        await store.close()
    data = (settings.data_dir / SQLITE_FILE).read_bytes()
    assert raw.encode() not in data
    assert hashlib.sha256(raw.encode()).digest() in data


def test_parse_scopes() -> None:
    assert parse_scopes("chat, email") == frozenset({"chat", "email"})
    for bad in ("", "root", "chat,root"):
        with pytest.raises(KeyAdminError):
            parse_scopes(bad)


def test_cli_prints_the_key_once_and_lists_without_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--name", "alice", "--scopes", "chat,admin", "--rpm", "7"]) == 0
    raw = capsys.readouterr().out.strip()
    assert raw.startswith("plg_")
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert raw not in listing
    assert raw[:12] + "…" in listing
    assert "alice" in listing
    assert "admin,chat" in listing
    assert "\t7\t" in listing
    assert main(["keys", "revoke", "alice"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "revoke", "alice"]) == 2
    assert main(["keys", "create", "--name", "bad name!"]) == 2
    assert main(["keys", "create", "--name", "bob", "--scopes", "root"]) == 2
    assert main(["keys", "create", "--name", "bob", "--rpm", "0"]) == 2
