"""The gateway's exception tree and its one mapping to HTTP.

::

    ApiError                         status  type
    ├── InvalidRequest                 422   invalid_request_error
    │   ├── ContextTooLong             422   context_length_exceeded
    │   └── BadRequest                 400   invalid_request_error (OpenAI's status, /v1)
    │       └── UnsupportedParameter   400   code: unsupported_parameter
    ├── Unauthorized                   401   authentication_error (missing/unknown/revoked key)
    │   └── InvalidCredentials         401   code: invalid_credentials (sign-in refused)
    ├── Forbidden                      403   permission_error     (key lacks the scope)
    │   └── CsrfRejected               403   code: csrf_failed (cookie write without token/origin)
    ├── RateLimited                    429   rate_limit_exceeded  (Retry-After: seconds)
    │   └── TooManyAttempts            429   code: too_many_attempts (sign-in brute force)
    ├── Overloaded                     503   server_overloaded    (Retry-After: seconds)
    ├── PayloadTooLarge                413   payload_too_large
    ├── UnsupportedMediaType           415   unsupported_media_type (a body that is not JSON)
    ├── NotFound                       404   not_found_error
    │   ├── SessionNotFound            404
    │   └── ModelNotFound              404   invalid_request_error, code: model_not_found
    ├── Conflict                       409   conflict_error
    ├── StoreUnavailable               503   store_unavailable    (retryable)
    └── EngineError                    502   engine_error
        ├── EngineUnavailable          503   engine_unavailable   (retryable)
        ├── EngineTimeout              504   engine_timeout       (retryable)
        ├── EngineRejected            4xx    engine_rejected      (the engine's own 4xx reason)
        ├── EngineBadResponse          502   engine_bad_response
        └── ModelOutputInvalid         502   model_output_invalid (no valid answer after a retry)

Domain code raises these; :func:`install_error_handlers` maps them to one JSON envelope,
shaped like OpenAI's so that one client-side parser serves both API families::

    {"error": {"message": "...", "type": "...", "param": null, "code": "..."}}

Messages are written for the caller and never include ``str()`` of a foreign exception.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from llm_api.observability.context import current_request
from llm_api.observability.metrics import ENGINE_ERRORS


class ApiError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def code(self) -> str:
        return self.type

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"} if self.retryable else {}


class Unauthorized(ApiError):
    status = 401
    type = "authentication_error"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class InvalidCredentials(Unauthorized):
    """A sign-in refused: one message for an unknown user, a wrong password, a disabled one."""

    @property
    def code(self) -> str:
        return "invalid_credentials"


class Forbidden(ApiError):
    status = 403
    type = "permission_error"


class CsrfRejected(Forbidden):
    """A cookie-authenticated write from another origin or without the session's token."""

    @property
    def code(self) -> str:
        return "csrf_failed"


class RateLimited(ApiError):
    """Over a per-key limit (requests per minute, concurrent streams)."""

    status = 429
    type = "rate_limit_exceeded"
    retryable = True

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManyAttempts(RateLimited):
    """Too many sign-in attempts for this username or from this address."""

    @property
    def code(self) -> str:
        return "too_many_attempts"


class Overloaded(RateLimited):
    """Every engine slot is busy and the short queue is full: answered at once."""

    status = 503
    type = "server_overloaded"


class InvalidRequest(ApiError):
    status = 422
    type = "invalid_request_error"


class ContextTooLong(InvalidRequest):
    type = "context_length_exceeded"


class BadRequest(InvalidRequest):
    """An invalid value on the OpenAI-compatible API, which answers 400 as OpenAI does."""

    status = 400


class UnsupportedParameter(BadRequest):
    """A parameter this server cannot honour: refused rather than silently dropped."""

    @property
    def code(self) -> str:
        return "unsupported_parameter"


class PayloadTooLarge(ApiError):
    status = 413
    type = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    type = "unsupported_media_type"


class NotFound(ApiError):
    status = 404
    type = "not_found_error"


class SessionNotFound(NotFound):
    pass


class ModelNotFound(NotFound):
    type = "invalid_request_error"  # OpenAI's shape for an unknown model

    @property
    def code(self) -> str:
        return "model_not_found"


class Conflict(ApiError):
    status = 409
    type = "conflict_error"


class StoreUnavailable(ApiError):
    """The conversation store is locked, full or unreachable; nothing was written."""

    status = 503
    type = "store_unavailable"
    retryable = True


class EngineError(ApiError):
    status = 502
    type = "engine_error"


class EngineUnavailable(EngineError):
    status = 503
    type = "engine_unavailable"
    retryable = True


class EngineTimeout(EngineError):
    status = 504
    type = "engine_timeout"
    retryable = True


class EngineBadResponse(EngineError):
    status = 502
    type = "engine_bad_response"


class ModelOutputInvalid(EngineError):
    """The model's answer did not fit the required schema, even after one retry."""

    status = 502
    type = "model_output_invalid"


class EngineRejected(EngineError):
    """The engine refused the request as invalid (its 4xx); the caller must change it."""

    type = "engine_rejected"

    def __init__(self, message: str, *, upstream_status: int, param: str | None = None) -> None:
        super().__init__(message, param=param)
        # A 400 from the engine is the caller's fault, reported as such; other 4xx
        # (404 unknown model, 413) keep their meaning.
        self.upstream_status = upstream_status if 400 <= upstream_status < 500 else 400

    @property
    def status_code(self) -> int:
        return self.upstream_status


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
