"""Structured JSON logs: one event per line with service name and correlation id."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["JsonFormatter", "correlation", "correlation_id", "get_logger", "setup_logging"]

_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar("pulse_correlation_id", default=None)
_service = "pulse"

# Attributes every LogRecord has; anything else passed via `extra=` becomes a JSON field.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def correlation_id() -> str | None:
    return _correlation.get()


@contextmanager
def correlation(cid: str | None = None) -> Iterator[str]:
    """Tag every log line inside the block with a correlation id (new one if none given)."""
    value = cid or uuid.uuid4().hex
    token = _correlation.set(value)
    try:
        yield value
    finally:
        _correlation.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": _service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = _correlation.get()
        if cid is not None:
            event["correlation_id"] = cid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str, separators=(",", ":"))


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route all logging to stderr as JSON lines tagged with `service`."""
    global _service
    _service = service
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
