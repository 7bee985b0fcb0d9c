"""How a request body becomes JSON: one content type, one parser, one parse.

- :class:`JsonContentType` (middleware) answers 415 to any request whose body is not
  ``application/json`` (a ``charset=utf-8`` parameter is fine), on every route. A web page
  can send ``text/plain`` or a form to another origin without a CORS preflight; JSON cannot
  be sent cross-site without one, so this is also what keeps other sites' pages from starting
  generations on a machine whose gateway runs without keys.
- :class:`JsonRoute` makes ``request.json()`` parse with orjson (strict RFC 8259: UTF-8 only,
  no BOM, no ``NaN``/``Infinity``, no lone surrogates, nesting at most 1,024 deep) and keep
  the result. The body guard (message counts) and the route read that one parse, so what
  the guard checked is what the route uses, and what orjson refuses is refused everywhere.
  Every router that takes a body uses it; tests/test_hostile.py checks that none is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_api.errors import UnsupportedMediaType
from llm_api.responses import api_error_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class JsonRequest(Request):
    """A request whose ``json()`` is orjson's parse, made once."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            # orjson.JSONDecodeError subclasses json.JSONDecodeError: FastAPI reports it as
            # its usual "json_invalid" validation error (422, in our envelope).
            self._json = orjson.loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """An API route whose request is a :class:`JsonRequest` (FastAPI's documented hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_orjson(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return with_orjson


def is_json_media_type(value: bytes) -> bool:
    """``application/json``, optionally with ``charset=utf-8`` (any case, quoted or not)."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return False
    media_type, *params = (part.strip() for part in text.split(";"))
    if media_type.lower() != "application/json":
        return False
    for param in params:
        name, _, setting = param.partition("=")
        if name.strip().lower() == "charset" and setting.strip().strip('"').lower() not in {
            "utf-8",
            "utf8",
        }:
            return False
    return True


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in {b"0", b""}
        if name == b"transfer-encoding":
            return True
    return False


class JsonContentType:
    """415 before anything is read when a body is sent as anything but UTF-8 JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS and _has_body(scope):
            content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
            if not is_json_media_type(content_type):
                error = UnsupportedMediaType(
                    "send the request body as JSON with Content-Type: application/json "
                    "(UTF-8; a charset=utf-8 parameter is accepted)"
                )
                await api_error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
