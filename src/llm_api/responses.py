"""Response helpers: JSON bodies, the error envelope, and the one mapping of errors to HTTP.

The exception tree itself is :mod:`llm_api.errors` (pure); this module turns its classes into
answers, for handlers (:func:`install_error_handlers`) and for code that answers on its own
(ASGI middleware, streaming routes).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from llm_api.errors import ApiError, EngineError, InvalidRequest
from llm_api.observability.context import current_request
from llm_api.observability.metrics import ENGINE_ERRORS


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def api_error_response(exc: ApiError) -> Response:
    headers = exc.headers or None
    body = error_body(exc.message, exc.type, param=exc.param, code=exc.code)
    return json_response(exc.status_code, body, headers)


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    problems: list[str] = []
    first_param: str | None = None
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        first_param = first_param or where
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            message = "request body is not valid JSON"
            where = "body"
        problems.append(f"{where}: {message}")
    return "; ".join(problems) or "invalid request", first_param


def note_api_error(exc: ApiError, *, in_stream: bool) -> None:
    """Count engine failures and tag the request's log record with the error type."""
    record = current_request()
    if record is not None:
        record.error_type = exc.type
        record.stream_error = record.stream_error or in_stream
    if isinstance(exc, EngineError):
        ENGINE_ERRORS.labels(exc.type, "in_stream" if in_stream else "before_first_byte").inc()


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
        note_api_error(exc, in_stream=False)
        return api_error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
        message, param = _describe_validation(exc)
        return json_response(
            422, error_body(message, InvalidRequest.type, param=param, code="invalid_value")
        )

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
        kind = "not_found_error" if exc.status_code == 404 else "http_error"
        headers = dict(exc.headers) if exc.headers else None
        return json_response(exc.status_code, error_body(str(exc.detail), kind, code=kind), headers)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
