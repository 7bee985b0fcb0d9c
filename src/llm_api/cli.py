"""The ``llm-api`` command: ``serve`` runs the supervisor; more subcommands join here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llm_api.auth.cli import add_key_commands, run_keys
from llm_api.email.batch import add_emails_parser, run_emails_command
from llm_api.loadsim.command import add_bench_parser, run_bench
from llm_api.people.cli import add_user_commands, run_users
from llm_api.settings import SettingsError, load_settings
from llm_api.supervisor import Mode, Supervisor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-api", description="PLG-AI LLM API")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the engine and the API gateway")
    serve.add_argument(
        "mode",
        nargs="?",
        choices=[m.value for m in Mode],
        default=Mode.DEFAULT.value,
        help="default: one worker; dev: auto-reload; prod: LLM_API_WORKERS workers",
    )
    add_emails_parser(commands)
    add_key_commands(commands)
    add_bench_parser(commands)
    add_user_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return Supervisor(settings, Mode(args.mode)).run()
    commands = {
        "keys": run_keys,
        "users": run_users,
        "emails": run_emails_command,
        "bench": run_bench,
    }
    if args.command in commands:
        return commands[args.command](args, settings)
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":
    sys.exit(main())
