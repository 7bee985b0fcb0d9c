"""``llm-api keys create|list|revoke``: API keys for operators (the key is printed once)."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

from llm_api.auth.keys import NAME_PATTERN, SCOPES, KeyAdminError, KeyStore, parse_scopes
from llm_api.chat.store import open_store
from llm_api.settings import Settings

CREATE_HINT = "llm-api keys create --name NAME --scopes chat,email,admin"


def add_key_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="make a key and print it once")
    create.add_argument("--name", required=True, help="who the key is for (owns its sessions)")
    create.add_argument("--scopes", default=",".join(SCOPES[:2]), help="chat,email,admin")
    create.add_argument("--rpm", type=int, default=None, help="requests per minute")
    create.add_argument("--max-streams", type=int, default=None, help="concurrent generations")
    actions.add_parser("list", help="names, prefixes, scopes, limits, last use (never keys)")
    revoke = actions.add_parser("revoke", help="revoke the active key(s) of NAME at once")
    revoke.add_argument("name")


async def _with_keys(settings: Settings, work: Callable[[KeyStore], Awaitable[int]]) -> int:
    store = await open_store(
        settings.database_url, settings.data_dir, busy_timeout=settings.database_busy_timeout
    )
    try:
        return await work(KeyStore(store.db))
    finally:
        await store.close()


def run_keys(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout

    async def create(keys: KeyStore) -> int:
        if not re.fullmatch(NAME_PATTERN, args.name):
            raise KeyAdminError("--name: letters, digits and . _ @ - only, at most 64")
        for flag, value in (("--rpm", args.rpm), ("--max-streams", args.max_streams)):
            if value is not None and value < 1:
                raise KeyAdminError(f"{flag} must be at least 1")
        raw, key = await keys.create(
            args.name, parse_scopes(args.scopes), rpm=args.rpm, max_streams=args.max_streams
        )
        print(raw, file=out)
        print(
            f"created key {key.prefix}… for {key.name} (scopes {','.join(sorted(key.scopes))});"
            " it is shown only this once",
            file=sys.stderr,
        )
        return 0

    async def listing(keys: KeyStore) -> int:
        print("name\tprefix\tscopes\trpm\tmax_streams\tcreated\tlast_used\tstatus", file=out)
        for key in await keys.list():
            print(
                "\t".join(
                    [
                        key.name,
                        key.prefix + "…",
                        ",".join(sorted(key.scopes)),
                        str(key.rpm or "default"),
                        str(key.max_streams or "default"),
                        key.created_at.isoformat(timespec="seconds"),
                        key.last_used_at.isoformat(timespec="seconds")
                        if key.last_used_at
                        else "never",
                        "revoked" if key.revoked else "active",
                    ]
                ),
                file=out,
            )
        return 0

    async def revoke(keys: KeyStore) -> int:
        if await keys.revoke(args.name) == 0:
            raise KeyAdminError(f"no active key named {args.name!r}")
        print(f"revoked the key of {args.name}", file=out)
        return 0

    work = {"create": create, "list": listing, "revoke": revoke}[args.keys_command]
    try:
        return asyncio.run(_with_keys(settings, work))
    except KeyAdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
