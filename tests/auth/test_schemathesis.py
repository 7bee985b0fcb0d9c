"""Schemathesis against the app's own OpenAPI schema, with the fake engine behind it.

Every operation, with a valid key (all default checks: no 5xx, status codes, content types
and bodies as documented, valid data accepted, invalid data rejected) and without one (401
on every route but the allowlist). Examples are few: CI has two cores.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.auth.conftest import bearer, make_key, secured_settings
from tests.conftest import serve_gateway
from tests.fakes import FakeEngineState, running_fake_engine

ALLOWLIST = {"/ping", "/api/health"}
# Public by design (sign-in): they answer without a key, never with anything private.
PUBLIC = {"/api/auth/methods", "/api/auth/login", "/api/auth/me"}
MAX_EXAMPLES = 4
_AUTH_HEADERS = {"authorization", "x-api-key"}

EMAIL_ANSWERS = {
    "tasks": {"tasks": [{"assigned_to": None, "title": "לשלוח דוח", "description": "לשלוח.",
                         "due_date": None, "evidence": None}]},
    "summary": {"title": "עדכון", "summary": "סיכום קצר של המייל."},
    "title": {"title": "שיחה על מזג האוויר"},
}  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The gateway and the fake engine on their own event loop, in a thread (hypothesis and
    schemathesis call synchronously)."""
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    ready: dict[str, Any] = {}
    stop = threading.Event()
    started = threading.Event()

    async def main() -> None:
        state = FakeEngineState(
            replies_by_schema={k: orjson.dumps(v).decode() for k, v in EMAIL_ANSWERS.items()}
        )
        async with running_fake_engine(state) as engine:
            config = secured_settings(
                engine.url, data_dir=data_dir, rate_limit_rpm=1_000_000, log_level="WARNING"
            )
            ready["key"] = await make_key(config, "fuzzer", "chat,email,admin")
            async with serve_gateway(config) as url:
                ready["url"] = url
                started.set()
                await asyncio.to_thread(stop.wait)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test thread below
            ready["error"] = exc
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(60)
    if "error" in ready:
        raise ready["error"]
    try:
        yield ready["url"], ready["key"]
    finally:
        stop.set()
        thread.join(30)


def _without_auth(case: Case[Any]) -> None:
    for name in [k for k in (case.headers or {}) if k.lower() in _AUTH_HEADERS]:
        del case.headers[name]


def test_schema_with_and_without_a_key(served: tuple[str, str]) -> None:
    url, key = served
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) >= 14
    seen: dict[str, set[int]] = {}
    failures: list[str] = []

    for operation in operations:

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Case[Any]) -> None:
            _without_auth(case)
            anonymous = case.call(base_url=url)
            statuses = seen.setdefault(case.operation.path, set())
            statuses.add(anonymous.status_code)
            if case.operation.path not in ALLOWLIST | PUBLIC:
                assert anonymous.status_code == 401, (case.operation.path, anonymous.text)
            # positive_data_acceptance is left out: some rules cannot be written in JSON
            # Schema (the chat's last message must be the user's; an email must parse), so
            # schema-valid bodies get a correct 422. Every other default check runs.
            case.call_and_validate(
                base_url=url, headers=bearer(key), excluded_checks=[positive_data_acceptance]
            )

        try:
            check()
        except Exception as exc:  # gathered, so that one run shows every finding
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:600])
    assert failures == []
    assert len(seen) == len({op.path for op in operations})
