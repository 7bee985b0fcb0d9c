"""``/api/auth``: sign-in methods, sign-in, the signed-in person, sign-out.

Audiences: ``methods`` and ``login`` are public; ``me`` and ``logout`` need a browser
session (``me`` also signs in the person a trusted SSO proxy names).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from llm_api.auth.guard import (
    SESSION_COOKIE,
    SignedInGuard,
    check_origin,
    client_address,
    public_access,
)
from llm_api.errors import Unauthorized
from llm_api.json_body import JsonRoute
from llm_api.observability.context import current_request
from llm_api.people.deps import PeopleDep
from llm_api.people.schemas import AuthMethods, LoginBody, SignedInPublic, UserPublic
from llm_api.people.service import TOUCH_EVERY, People, SignedIn

public = APIRouter(
    prefix="/api/auth", tags=["auth"], route_class=JsonRoute, dependencies=[Depends(public_access)]
)
signed_in = APIRouter(
    prefix="/api/auth",
    tags=["auth"],
    route_class=JsonRoute,
    dependencies=[Depends(SignedInGuard())],
)
proxied = APIRouter(
    prefix="/api/auth", tags=["auth"], route_class=JsonRoute, dependencies=[Depends(public_access)]
)


def _request_id() -> str | None:
    record = current_request()
    return getattr(record, "request_id", None) if record is not None else None


def _set_cookie(response: Response, request: Request, people: People, done: SignedIn) -> None:
    secure = people.settings.cookie_secure
    response.set_cookie(
        SESSION_COOKIE,
        done.token,
        max_age=int(people.absolute.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure if secure is not None else request.url.scheme == "https",
        path="/",
    )


def _answer(done: SignedIn) -> SignedInPublic:
    return SignedInPublic(user=UserPublic(**done.user.public()), csrf_token=done.csrf_token)


@public.get("/methods", response_model=AuthMethods)
async def methods(people: PeopleDep) -> AuthMethods:
    return AuthMethods(**people.methods())


@public.post(
    "/login",
    response_model=SignedInPublic,
    responses={
        401: {"description": "invalid_credentials"},
        429: {"description": "too_many_attempts"},
    },
)
async def login(
    body: LoginBody, request: Request, response: Response, people: PeopleDep
) -> SignedInPublic:
    """Sign in with a local or directory password; sets the session cookie (a new id at
    every sign-in) and returns the CSRF token for writes."""
    # A login from another site would sign the victim in as the attacker (login CSRF).
    check_origin(request)
    done = await people.sign_in(body.username, body.password, client_address(request))
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        previous = await people.store.resolve_session(
            old, idle=people.idle, touch_every=TOUCH_EVERY
        )
        if previous is not None:
            await people.store.revoke_session(previous.id)
    _set_cookie(response, request, people, done)
    return _answer(done)


def _utf8(value: str) -> str:
    """Proxies send UTF-8 bytes in headers (Hebrew group names); Starlette reads Latin-1."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


@proxied.get(
    "/me", response_model=SignedInPublic, responses={401: {"description": "not signed in"}}
)
async def me(request: Request, response: Response, people: PeopleDep) -> SignedInPublic:
    """The signed-in person and the CSRF token; 401 when not signed in. Behind a trusted SSO
    proxy, the person it names is signed in here (and provisioned on first sight)."""
    address = client_address(request)
    named = None
    if people.trusted_proxy(address) and people.settings.proxy_user_header:
        named = request.headers.get(people.settings.proxy_user_header)
    token = request.cookies.get(SESSION_COOKIE)
    session = (
        await people.store.resolve_session(token, idle=people.idle, touch_every=TOUCH_EVERY)
        if token
        else None
    )
    if session is not None and (named is None or named == session.user.username):
        return SignedInPublic(
            user=UserPublic(**session.user.public()), csrf_token=session.csrf_token
        )
    if named and address:
        if session is not None:
            await people.store.revoke_session(session.id)
        email = request.headers.get(people.settings.proxy_email_header or "") or None
        raw_groups = _utf8(request.headers.get(people.settings.proxy_groups_header or "") or "")
        group_names = tuple(sorted({g.strip() for g in raw_groups.split(",") if g.strip()}))
        done = await people.sign_in_from_proxy(_utf8(named)[:64], email, group_names, address)
        _set_cookie(response, request, people, done)
        return _answer(done)
    raise Unauthorized("not signed in")


@signed_in.post("/logout", status_code=204, responses={401: {"description": "not signed in"}})
async def logout(request: Request, people: PeopleDep) -> Response:
    """Revoke this browser session and clear its cookie."""
    from llm_api.auth.guard import current_principal  # noqa: PLC0415 - avoid a cycle at import

    principal = await current_principal(request)
    assert principal.session is not None  # noqa: S101 - SignedInGuard admitted a session
    await people.store.revoke_session(principal.session.id)
    await people.store.audit(
        "sign_out", actor=principal.name, target=principal.name,
        address=client_address(request), request_id=_request_id(),
    )  # fmt: skip
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response
