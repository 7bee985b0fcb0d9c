"""Logging set-up: metadata only, text for people or JSON lines for machines."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

from llm_api.observability.context import current_request
from llm_api.settings import LogFormat, Settings

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # CR/LF in a message must not forge a second log line.
        line = super().format(record)
        return line.replace("\r", "\\r").replace("\n", "\\n")


def _with_request_id(record: logging.LogRecord) -> bool:
    """Give every line logged while serving a request that request's id (and key name)."""
    if not hasattr(record, "request_id"):
        current = current_request()
        if current is not None:
            record.request_id = current.request_id
            record.key_name = current.key_name
    return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_with_request_id)
    if settings.log_format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("llm_api")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    root.propagate = False
