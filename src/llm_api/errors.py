"""The gateway's exception tree: each class's HTTP status, error type and retryability.

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

Domain code raises these; :func:`llm_api.responses.install_error_handlers` maps them to one
JSON envelope, shaped like OpenAI's so that one client-side parser serves both API families::

    {"error": {"message": "...", "type": "...", "param": null, "code": "..."}}

Messages are written for the caller and never include ``str()`` of a foreign exception.
This module is pure: it imports nothing of the web framework and nothing of the features.
"""

from __future__ import annotations

from typing import ClassVar


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
