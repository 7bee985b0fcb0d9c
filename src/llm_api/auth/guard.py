"""Who is calling, and may they: the one dependency that app.py puts on each router.

``Authorization: Bearer KEY`` and ``X-API-Key: KEY`` are read by FastAPI's security helpers
and then go through one path, :func:`authenticate`: the key is looked up on every request,
never cached, so a revoked key fails on the next request even over a kept-alive connection.

Each router gets exactly one :class:`Guard`, which does every check its routes need (key,
scope, message sizes, generation slot) in one call. FastAPI's dependency solver costs tens
of microseconds per node and a generator dependency far more (an anyio cancel scope per
request); on the streaming routes that was a third of the gateway's per-request CPU. The
slot a guard takes is released by :class:`ReleaseSlots` once the response (stream
included) has been sent; :func:`document_security` puts the key schemes the solver no
longer sees back into the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import hmac
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_api.auth.keys import ROLE_SCOPES, SCOPES, ApiKey
from llm_api.auth.limits import message_limit_error
from llm_api.chat.store import DEFAULT_OWNER
from llm_api.errors import BadRequest, CsrfRejected, Forbidden, InvalidRequest, Unauthorized
from llm_api.observability.context import current_request
from llm_api.people.service import TOUCH_EVERY
from llm_api.people.store import BrowserSession
from llm_api.state import AppState, settings_of

SESSION_COOKIE = "llm_api_session"
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer plg_…")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: plg_…")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a key's name or a signed-in user's username (which owns the
    conversations) and scopes; ``session`` is set when a browser session cookie was used."""

    name: str
    scopes: frozenset[str]
    key: ApiKey | None = None  # None while LLM_API_AUTH=disabled, and for browser sessions
    session: BrowserSession | None = None


_UNSAFE = frozenset(("POST", "PUT", "PATCH", "DELETE"))


OPEN_ACCESS = Principal(DEFAULT_OWNER, frozenset(SCOPES))


def _presented(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    """The one key the request carries; two different keys are refused, not chosen from."""
    from_bearer = bearer.credentials if bearer is not None else None
    if from_bearer and header and from_bearer != header:
        raise Unauthorized("two different API keys were sent; send one")
    return from_bearer or header


async def _from_cookie(request: Request, token: str) -> Principal | None:
    people = AppState.of(request).people
    session = await people.store.resolve_session(
        token, idle=people.idle, touch_every=TOUCH_EVERY, with_groups=False
    )
    if session is None:
        return None
    user = session.user
    if people.trusted_proxy(client_address(request)):
        # Behind the SSO proxy the cookie must still be the person the proxy names.
        named = request.headers.get(people.settings.proxy_user_header or "")
        if named and named.encode("latin-1", "replace").decode("utf-8", "replace") != user.username:
            return None
    if request.method in _UNSAFE:
        check_csrf(request, session.csrf_token)
    record = current_request()
    if record is not None:
        record.key_name = f"user:{user.username}"
    return Principal(user.username, ROLE_SCOPES.get(user.role, frozenset()), None, session)


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def check_origin(request: Request) -> None:
    """An ``Origin`` header, when sent, must be this site's or a configured CORS origin."""
    settings = settings_of(request)
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own and origin not in settings.cors_origins:
            raise CsrfRejected("cross-origin write refused: the Origin is not this site's")


def check_csrf(request: Request, expected: str) -> None:
    """A cookie-authenticated write must come from our own origin (or a configured CORS
    origin) and carry the session's token in ``X-CSRF-Token``."""
    check_origin(request)
    sent = request.headers.get("x-csrf-token", "")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected(
            "a write signed in by cookie needs the X-CSRF-Token header from /api/auth/me"
        )


async def authenticate(request: Request) -> Principal:
    settings = settings_of(request)
    bearer, header = await _bearer(request), await _header(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and bearer is None and header is None:
        principal = await _from_cookie(request, cookie)
        if principal is not None:
            return principal
        if settings.auth_required:
            raise Unauthorized("your session has ended; sign in again")
    if not settings.auth_required:
        return OPEN_ACCESS
    raw = _presented(bearer, header)
    keys = AppState.of(request).keys
    key = await keys.verify(raw) if raw else None
    if key is None:
        # One message for missing, unknown and revoked keys: nothing to probe with.
        raise Unauthorized(
            "a valid API key is required: send Authorization: Bearer KEY or X-API-Key: KEY"
        )
    record = current_request()
    if record is not None:
        record.key_name = key.name
    limits = AppState.of(request).key_limits
    await limits.check_rate(key.name, key.rpm or settings.rate_limit_rpm)
    return Principal(key.name, key.scopes, key)


class SignedInGuard:
    """A person signed in through a browser session (API keys are not people here)."""

    required_scope = "signed_in"  # read by the route audit test

    async def __call__(self, request: Request) -> None:
        token = request.cookies.get(SESSION_COOKIE)
        principal = await _from_cookie(request, token) if token else None
        if principal is None:
            raise Unauthorized("sign in first: POST /api/auth/login")
        request.scope[PRINCIPAL] = principal


async def public_access(request: Request) -> None:
    """Anyone may call these routes (sign-in and its methods)."""


public_access.required_scope = "public"  # type: ignore[attr-defined]  # read by the route audit


PRINCIPAL = "llm_api.principal"
_SLOTS = "llm_api.slots"


class Guard:
    """A router's access check: a key with ``scope``, then (on POST) message sizes and a
    generation slot held until the response has been sent."""

    def __init__(self, scope: str, *, sizes: bool = False, slot: bool = False) -> None:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope}")
        self.required_scope = scope  # read by the route audit test
        self.sizes = sizes
        self.slot = slot

    async def __call__(self, request: Request) -> None:
        principal = await authenticate(request)
        if self.required_scope not in principal.scopes:
            who = "your account" if principal.session is not None else "this API key"
            raise Forbidden(f"{who} lacks the '{self.required_scope}' scope")
        request.scope[PRINCIPAL] = principal
        if request.method != "POST":
            return
        if self.sizes:
            await message_limits(request)
        if self.slot:
            await _take_slot(request, principal)


async def _take_slot(request: Request, principal: Principal) -> None:
    """Per-key and engine-wide caps, held for the generation's whole life (stream included)."""
    held = request.scope.get(_SLOTS)
    if held is None:
        raise RuntimeError("ReleaseSlots is not installed: a slot would never be released")
    settings = settings_of(request)
    stack = AsyncExitStack()
    held.append(stack)
    if principal.key is not None:
        limits = AppState.of(request).key_limits
        cap = principal.key.max_streams or settings.max_streams_per_key
        await stack.enter_async_context(limits.stream(principal.name, cap))
    gate = AppState.of(request).engine_gate
    await stack.enter_async_context(gate.slot())


class ReleaseSlots:
    """Pure ASGI, no per-chunk work: releases the slots guards took once the app is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: list[AsyncExitStack] = []
        scope[_SLOTS] = held
        try:
            await self.app(scope, receive, send)
        finally:
            for stack in held:
                await asyncio.shield(stack.aclose())


async def current_principal(request: Request) -> Principal:
    """The caller its router's guard admitted (authenticated again if a route has none)."""
    principal = request.scope.get(PRINCIPAL)
    return principal if isinstance(principal, Principal) else await authenticate(request)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def health_access(request: Request) -> None:
    """``/ping`` is always open; ``/api/health`` too unless LLM_API_PUBLIC_HEALTH=false."""
    settings = settings_of(request)
    if request.url.path == "/ping" or settings.public_health:
        return
    await authenticate(request)


health_access.required_scope = "any"  # type: ignore[attr-defined]  # read by the route audit


async def message_limits(request: Request) -> None:
    """422 (400 on /v1, as OpenAI answers) for too many messages or one over the size limit."""
    settings = settings_of(request)
    error = BadRequest if request.url.path.startswith("/v1/") else InvalidRequest
    try:
        # The route's own parse (JsonRoute caches it): the guard checks what the route uses,
        # and a body the parser refuses is refused here, never waved through.
        body = await request.json()
    except orjson.JSONDecodeError:
        raise error("request body is not valid JSON") from None
    problem = message_limit_error(
        body, max_messages=settings.max_messages, max_chars=settings.max_message_chars
    )
    if problem is not None:
        raise error(problem[0], param=problem[1])


def document_security(app: FastAPI) -> None:
    """Put both key schemes on every operation that answers 401, as FastAPI would have done
    had the guards declared the header readers as dependencies."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemes = {s.scheme_name: s.model.model_dump(mode="json", by_alias=True, exclude_none=True)
                   for s in (_bearer, _header)}  # fmt: skip
        schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(schemes)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "401" in operation.get("responses", {}):
                    operation["security"] = [{name: []} for name in schemes]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# Documented on every protected operation (app.py passes it to include_router).
PROTECTED_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing, unknown or revoked API key"},
    403: {"description": "The API key lacks this route's scope"},
    429: {"description": "Over the key's requests per minute or concurrent generations"},
}
