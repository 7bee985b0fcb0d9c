"""Who is calling, and may they: the dependencies that app.py puts on each router.

``Authorization: Bearer KEY`` and ``X-API-Key: KEY`` are read by FastAPI's security helpers
(so the OpenAPI schema documents both) and then go through one path, :func:`authenticate`:
the key is looked up on every request, never cached, so a revoked key fails on the next
request even over a kept-alive connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, cast

import orjson
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from llm_api.auth.keys import SCOPES, ApiKey, KeyStore
from llm_api.auth.limits import Gate, KeyLimits, message_limit_error
from llm_api.chat.store import DEFAULT_OWNER
from llm_api.errors import BadRequest, Forbidden, InvalidRequest, Unauthorized
from llm_api.observability.context import current_request
from llm_api.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer plg_…")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: plg_…")

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
HeaderDep = Annotated[str | None, Depends(_header)]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a key's name (which owns its conversations) and scopes."""

    name: str
    scopes: frozenset[str]
    key: ApiKey | None = None  # None while LLM_API_AUTH=disabled


OPEN_ACCESS = Principal(DEFAULT_OWNER, frozenset(SCOPES))


def _presented(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    """The one key the request carries; two different keys are refused, not chosen from."""
    from_bearer = bearer.credentials if bearer is not None else None
    if from_bearer and header and from_bearer != header:
        raise Unauthorized("two different API keys were sent; send one")
    return from_bearer or header


async def authenticate(request: Request, bearer: BearerDep, header: HeaderDep) -> Principal:
    settings = cast(Settings, request.app.state.settings)
    if not settings.auth_required:
        return OPEN_ACCESS
    raw = _presented(bearer, header)
    keys = cast(KeyStore, request.state.key_store)
    key = await keys.verify(raw) if raw else None
    if key is None:
        # One message for missing, unknown and revoked keys: nothing to probe with.
        raise Unauthorized(
            "a valid API key is required: send Authorization: Bearer KEY or X-API-Key: KEY"
        )
    record = current_request()
    if record is not None:
        record.key_name = key.name
    limits = cast(KeyLimits, request.state.key_limits)
    await limits.check_rate(key.name, key.rpm or settings.rate_limit_rpm)
    return Principal(key.name, key.scopes, key)


PrincipalDep = Annotated[Principal, Depends(authenticate)]

ScopeCheck = Callable[[Principal], Awaitable[None]]


def require_scope(scope: str) -> ScopeCheck:
    """A router dependency: a valid key carrying ``scope`` (403 without it)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope}")

    async def check(principal: PrincipalDep) -> None:
        if scope not in principal.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope")

    check.required_scope = scope  # type: ignore[attr-defined]  # read by the route audit test
    return check


async def health_access(request: Request) -> None:
    """``/ping`` is always open; ``/api/health`` too unless LLM_API_PUBLIC_HEALTH=false.

    The header readers are called here rather than declared, so the schema does not claim
    that the open routes need a key; the check itself is :func:`authenticate`, as everywhere.
    """
    settings = cast(Settings, request.app.state.settings)
    if request.url.path == "/ping" or settings.public_health:
        return
    await authenticate(request, await _bearer(request), await _header(request))


health_access.required_scope = "any"  # type: ignore[attr-defined]  # read by the route audit


async def generation_slot(request: Request, principal: PrincipalDep) -> AsyncIterator[None]:
    """Held for a generation's whole life (stream included): per-key and engine-wide caps."""
    if request.method != "POST":
        yield
        return
    settings = cast(Settings, request.app.state.settings)
    async with AsyncExitStack() as stack:
        if principal.key is not None:
            limits = cast(KeyLimits, request.state.key_limits)
            cap = principal.key.max_streams or settings.max_streams_per_key
            await stack.enter_async_context(limits.stream(principal.name, cap))
        gate = cast(Gate, request.state.engine_gate)
        await stack.enter_async_context(gate.slot())
        yield


# Ends after the response is sent, so a stream holds its slot until its last event.
GenerationSlot = Depends(generation_slot, scope="request")


async def message_limits(request: Request) -> None:
    """422 (400 on /v1, as OpenAI answers) for too many messages or one over the size limit."""
    if request.method != "POST":
        return
    settings = cast(Settings, request.app.state.settings)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return  # the route reports invalid JSON in its own words
    problem = message_limit_error(
        body, max_messages=settings.max_messages, max_chars=settings.max_message_chars
    )
    if problem is not None:
        error = BadRequest if request.url.path.startswith("/v1/") else InvalidRequest
        raise error(problem[0], param=problem[1])


# Documented on every protected operation (app.py passes it to include_router).
PROTECTED_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing, unknown or revoked API key"},
    403: {"description": "The API key lacks this route's scope"},
    429: {"description": "Over the key's requests per minute or concurrent generations"},
}
