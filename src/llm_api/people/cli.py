"""``llm-api users create NAME [--admin]``: the first admin (and any local user).

The password is read from standard input when it is not a terminal (one line), else
prompted for twice; it is never taken from the command line, where ``ps`` would show it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
from typing import TextIO

from llm_api.chat.store import open_store
from llm_api.errors import ApiError
from llm_api.people.passwords import Passwords
from llm_api.people.store import PeopleStore
from llm_api.settings import Settings

USERNAME = r"^[A-Za-z0-9][A-Za-z0-9._@\-]{0,63}$"


def add_user_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser("users", help="create local users (the first admin)")
    actions = users.add_subparsers(dest="users_command", required=True)
    create = actions.add_parser("create", help="a local user; password from stdin or a prompt")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="the admin role")
    create.add_argument("--display-name", default="")
    create.add_argument("--email", default=None)


def read_password(stdin: TextIO) -> str:
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


def run_users(args: argparse.Namespace, settings: Settings, stdin: TextIO | None = None) -> int:
    if not re.fullmatch(USERNAME, args.name):
        print("error: NAME: letters, digits and . _ @ - only, at most 64", file=sys.stderr)
        return 2
    try:
        password = read_password(stdin or sys.stdin)
        passwords = Passwords.from_settings(settings)
        passwords.check_policy(password, args.name)
    except (ValueError, ApiError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2

    async def create() -> int:
        store = await open_store(
            settings.database_url, settings.data_dir, busy_timeout=settings.database_busy_timeout
        )
        try:
            people = PeopleStore(store.engine)
            user = await people.create_user(
                args.name,
                role="admin" if args.admin else "member",
                source="local",
                password_hash=await passwords.hash(password),
                display_name=args.display_name,
                email=args.email,
            )
            await people.audit("user_created", actor="cli", target=user.username,
                               detail={"role": user.role})  # fmt: skip
        finally:
            await store.close()
        print(f"created {user.role} {user.username} (id {user.id})")
        return 0

    try:
        return asyncio.run(create())
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
