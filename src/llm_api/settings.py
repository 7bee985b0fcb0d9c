"""Configuration: one pydantic-settings class, every variable prefixed ``LLM_API_``.

Settings are validated once, at start-up; a bad value stops the process with one line
naming the variable (see :func:`load_settings`), never a traceback.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    AnyHttpUrl,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_VLLM_MODEL = "gaunernst/gemma-3-12b-it-qat-autoawq"
DEFAULT_LLAMACPP_MODEL = "gemma-3-270m"

Port = Annotated[int, Field(ge=1, le=65535)]


class EngineKind(StrEnum):
    AUTO = "auto"
    VLLM = "vllm"
    LLAMACPP = "llamacpp"
    EXTERNAL = "external"


class AuthMode(StrEnum):
    REQUIRED = "required"
    DISABLED = "disabled"


class RunMode(StrEnum):
    """How the supervisor started the gateway (``llm-api serve [default|dev|prod]``)."""

    DEFAULT = "default"
    DEV = "dev"
    PROD = "prod"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLM_API_", extra="ignore", frozen=True, validate_default=True
    )

    # --- the seed's table -------------------------------------------------------------
    base_url: str | None = Field(
        default=None,
        description="Seed name for the engine's OpenAI base URL; same meaning as ENGINE_URL.",
    )
    host: str = "0.0.0.0"  # noqa: S104 - a server binds all interfaces unless told otherwise
    port: Port = 8090
    vllm_port: Port = Field(default=8060, description="Port of the engine the supervisor starts.")
    model_name: str | None = Field(
        default=None, description="Model to serve / ask for; default depends on the engine."
    )
    log_level: str = "INFO"
    request_timeout: float = Field(default=300.0, gt=0)
    health_check_timeout: float = Field(default=5.0, gt=0)
    connection_pool_size: int = Field(default=100, ge=1)
    max_keepalive_connections: int = Field(default=50, ge=0)
    keepalive_expiry: float = Field(default=60.0, ge=0)

    # --- engine ---------------------------------------------------------------------------
    engine: EngineKind = EngineKind.AUTO
    engine_url: AnyHttpUrl | None = None
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    max_model_len: int = Field(default=8192, ge=256)
    engine_parallel: int = Field(default=4, ge=1, description="llama-server slots (-np).")
    engine_threads: int | None = Field(default=None, ge=1)
    engine_replicas: int = Field(
        default=1,
        ge=1,
        description="Engine replicas the supervisor starts (ports VLLM_PORT+1…, one GPU each on "
        "vLLM) with vllm-router in front of them on VLLM_PORT (docs/REPLICAS.md).",
    )
    engine_replica_urls: list[AnyHttpUrl] = Field(
        default_factory=list,
        description="Engines already running (JSON list of URLs) that the supervisor puts "
        "vllm-router in front of, launching no engine.",
    )
    router_policy: str = Field(
        default="consistent_hash",
        description="vllm-router --policy; consistent_hash keys on the conversation id.",
    )
    router_health_interval: int = Field(
        default=5, ge=1, description="Seconds between vllm-router's health checks of replicas."
    )
    background_priority: int | None = Field(
        default=None,
        description="vLLM request priority for titles and batch email (people keep 0; larger "
        "runs later). Needs vLLM's --scheduling-policy priority, which the supervisor passes "
        "when it starts vLLM; default then 10, else unset (FCFS vLLM rejects the field).",
    )
    background_slots: int | None = Field(
        default=None,
        ge=1,
        description="Most background requests (titles, batch email) one gateway process keeps "
        "on the engine at once; default: a quarter of ENGINE_PARALLEL on llama-server.",
    )
    engine_start_timeout: float = Field(default=900.0, gt=0)
    vllm_command: str | None = Field(
        default=None,
        description="Command line that starts vLLM; {model} {port} {tp} {max_model_len} filled in.",
    )
    model_path: Path | None = Field(
        default=None, description="GGUF file for llama-server; default: the bundled model."
    )
    data_dir: Path = Path("data")

    # --- conversations --------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the conversation store (postgresql+asyncpg://…); "
        "default: a SQLite file in LLM_API_DATA_DIR.",
    )
    database_busy_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a locked database before 503."
    )
    active_session_minutes: float = Field(
        default=30.0, gt=0, description="A session is active if it had a message this recently."
    )
    chat_titles: bool = Field(
        default=True, description="Name new conversations after their first exchange."
    )
    chat_flush_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between writes of a streaming reply's text so far (kept after a "
        "crash) and renewals of its lease; a reply whose lease (5 x this) runs out is "
        "marked interrupted.",
    )

    # --- gateway --------------------------------------------------------------------------
    workers: int = Field(default_factory=lambda: 2 * (os.cpu_count() or 1), ge=1)
    log_format: LogFormat = LogFormat.TEXT
    default_max_tokens: int = Field(default=1024, ge=1)
    max_tokens_cap: int = Field(default=4096, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_messages: int = Field(default=500, ge=1)
    max_message_chars: int = Field(default=100_000, ge=1)
    sse_ping_seconds: float = Field(default=15.0, gt=0)
    max_email_chars: int = Field(
        default=100_000, ge=1, description="Longest email_content accepted (413 above it)."
    )

    # --- observability ------------------------------------------------------------------
    request_log_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL of the request log; default: SQLite in DATA_DIR.",
    )
    request_log_retention_days: float = Field(default=7.0, gt=0)
    request_log_flush_seconds: float = Field(default=1.0, gt=0)
    health_sample_seconds: float = Field(default=15.0, gt=0)
    metrics_public: bool = Field(
        default=False,
        description="GET /metrics answers without a key (for Prometheus); /api/metrics "
        "keeps the admin scope.",
    )
    otlp_endpoint: AnyHttpUrl | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (http://collector:4318); spans go to "
        "{endpoint}/v1/traces. Unset: no tracing at all.",
    )
    otlp_service_name: str = Field(default="llm-api", min_length=1)

    # --- security -----------------------------------------------------------------------
    mode: RunMode = Field(
        default=RunMode.DEFAULT, description="Set by the supervisor: default, dev or prod."
    )
    auth: AuthMode | None = Field(
        default=None, description="required | disabled; default: required in prod, else disabled."
    )
    public_health: bool = Field(default=True, description="/api/health answers without a key.")
    docs_enabled: bool | None = Field(
        default=None, description="/docs and /openapi.json; default: on except in prod."
    )
    rate_limit_rpm: int = Field(default=60, ge=1, description="Requests/minute per key.")
    max_streams_per_key: int = Field(default=4, ge=1, description="Concurrent streams per key.")
    max_concurrent_requests: int = Field(
        default=64, ge=1, description="Engine requests in flight (per process without Redis)."
    )
    max_queue: int = Field(default=32, ge=0, description="Requests waiting for an engine slot.")
    queue_timeout: float = Field(default=30.0, gt=0, description="Longest wait in that queue.")
    redis_url: str | None = Field(
        default=None, description="redis://… to share limit counters across workers."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Allowed CORS origins."
    )
    cors_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "Authorization",
            "X-API-Key",
            "Content-Type",
            "Accept",
            "Accept-Language",
            "X-Request-ID",
            "X-Client-ID",
            "X-Session-ID",
            "X-Requested-With",
            "X-CSRF-Token",
        ],
        description="Request headers a cross-origin browser client may send (CORS preflight); "
        "'*' allows any.",
    )
    cors_methods: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        description="Methods a cross-origin browser client may use; '*' allows any.",
    )
    trusted_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"], description="Host headers accepted (TrustedHost)."
    )

    # --- people: sign-in, browser sessions ----------------------------------------------
    local_login: bool = Field(default=True, description="Sign-in with local passwords.")
    password_min_length: int = Field(default=10, ge=8, le=128)
    argon2_time_cost: int = Field(default=3, ge=1, description="Argon2id iterations.")
    argon2_memory_kib: int = Field(default=65536, ge=8192, description="Argon2id memory (KiB).")
    argon2_parallelism: int = Field(default=1, ge=1)
    ldap_url: str | None = Field(
        default=None, description="ldap://host:389 or ldaps://host:636; unset: no LDAP sign-in."
    )
    ldap_start_tls: bool = Field(default=False, description="StartTLS on an ldap:// URL.")
    ldap_ca_file: Path | None = Field(default=None, description="CA bundle for LDAPS/StartTLS.")
    ldap_tls_verify: bool = Field(default=True, description="Verify the directory's certificate.")
    ldap_bind_dn: str | None = Field(default=None, description="Service account for the search.")
    ldap_bind_password: str | None = None
    ldap_user_base: str = Field(default="", description="Search base for people.")
    ldap_user_filter: str = Field(
        default="(uid={username})",
        description="{username} is replaced, escaped; AD: (sAMAccountName={username}).",
    )
    ldap_display_name_attr: str = "cn"
    ldap_email_attr: str = "mail"
    ldap_group_attr: str = Field(
        default="memberOf", description="Attribute of the user listing its groups' DNs."
    )
    ldap_group_base: str | None = Field(
        default=None,
        description="If set, groups are searched here by (member=<user dn>) instead.",
    )
    ldap_admin_groups: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Group DNs or names whose members are admins."
    )
    ldap_timeout: float = Field(default=5.0, gt=0)
    proxy_user_header: str | None = Field(
        default=None, description="Header an SSO proxy puts the user in (X-Forwarded-User)."
    )
    proxy_email_header: str | None = None
    proxy_groups_header: str | None = None
    proxy_addresses: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Addresses/networks the proxy header is taken from."
    )
    session_idle_minutes: float = Field(default=120.0, gt=0)
    session_absolute_hours: float = Field(default=24.0, gt=0)
    cookie_secure: bool | None = Field(
        default=None, description="Secure cookie; default: when the request came over HTTPS."
    )
    login_attempts_per_user: int = Field(default=10, ge=1, description="Per 15 minutes.")
    login_attempts_per_address: int = Field(default=50, ge=1, description="Per 15 minutes.")

    @field_validator(
        "cors_origins",
        "cors_headers",
        "cors_methods",
        "trusted_hosts",
        "ldap_admin_groups",
        "proxy_addresses",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        # "a, b" in the environment; a list when given in code.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}:
            raise ValueError("must be one of CRITICAL, ERROR, WARNING, INFO, DEBUG")
        return level

    @field_validator("model_path")
    @classmethod
    def _model_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no model file at {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_max_tokens > self.max_tokens_cap:
            raise ValueError("LLM_API_DEFAULT_MAX_TOKENS must not exceed LLM_API_MAX_TOKENS_CAP")
        if self.max_tokens_cap >= self.max_model_len:
            raise ValueError("LLM_API_MAX_TOKENS_CAP must be below LLM_API_MAX_MODEL_LEN")
        return self

    # --- derived --------------------------------------------------------------------------
    @property
    def auth_required(self) -> bool:
        if self.auth is not None:
            return self.auth is AuthMode.REQUIRED
        return self.mode is RunMode.PROD

    @property
    def docs_on(self) -> bool:
        return self.docs_enabled if self.docs_enabled is not None else self.mode is not RunMode.PROD

    @property
    def background_slot_cap(self) -> int | None:
        """The background cap in force: as set, else a quarter of llama-server's slots
        (vLLM yields by priority instead, and preempts, so it needs no cap)."""
        if self.background_slots is not None:
            return self.background_slots
        if self.engine is EngineKind.VLLM:
            return None
        return max(1, self.engine_parallel // 4)

    @property
    def external_url(self) -> str | None:
        """The engine URL the operator gave (ENGINE_URL, else the seed's BASE_URL)."""
        raw = str(self.engine_url) if self.engine_url is not None else self.base_url
        if not raw:
            return None
        raw = raw.rstrip("/")
        # The seed's BASE_URL was an OpenAI base ("…/v1"); the client adds paths itself.
        return raw.removesuffix("/v1")

    @property
    def engine_base_url(self) -> str:
        """Where the gateway finds the engine: the external URL, else the one we launch."""
        return self.external_url or f"http://127.0.0.1:{self.vllm_port}"


class SettingsError(Exception):
    """Configuration that cannot work; the message is one line naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # pydantic accepts field kwargs
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in error["loc"]]
        name = "LLM_API_" + loc[0].upper() if loc else "settings"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if loc else message)
    return "invalid configuration: " + "; ".join(parts)
