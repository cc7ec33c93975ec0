"""Logging set-up: JSON or text lines carrying the request, job, user and subscription they belong to, with
every configured secret (and anything shaped like a token) redacted.

The ids come from a context variable that the web (per request) and the workers (per job) set with
``bound(...)``; ``ContextFields`` copies them onto each record, so every line logged while handling a
request or a job carries them without callers passing them. Messages never hold bodies, tokens,
clientState or mail content by design; the redaction is the net under that rule, and it applies to the
final formatted line (message, exception text and fields alike), in both formats.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

from service.config import SECRET_FIELDS, Settings

REDACTED = "[redacted]"
FIELDS = ("request_id", "job_id", "queue", "user_id", "subscription_id")
LIBRARY_LOGGERS = ("rq.worker", "rq.scheduler")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# JWTs (access and id tokens, validation tokens) and bearer credentials, whatever their origin.
TOKEN_SHAPES = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*|(?<=Bearer )[^\s\"',]{8,}")

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("calsync_log_context", default=None)


def current() -> dict[str, str]:
    return dict(_context.get() or {})


def bind(**fields: str | None) -> contextvars.Token:
    """Add fields to this request's or job's log context; ``reset(token)`` restores the previous one."""
    merged = {**(_context.get() or {}), **{k: str(v) for k, v in fields.items() if v is not None}}
    return _context.set(merged)


def reset(token: contextvars.Token) -> None:
    _context.reset(token)


def clear() -> None:
    """Forget every bound field (the end of a request on a thread that serves the next one)."""
    _context.set(None)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        reset(token)


class ContextFields(logging.Filter):
    """Copy the bound ids onto the record (JSON shows them as fields, text appends them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class RedactSecrets(logging.Filter):
    """Replace any configured secret value that slips into a formatted message."""

    def __init__(self, settings: Settings):
        super().__init__()
        self.secrets = secret_values(settings)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message, self.secrets)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def secret_values(settings: Settings) -> list[str]:
    values = []
    for name in SECRET_FIELDS:
        value = getattr(settings, name)
        values.extend(value if isinstance(value, tuple) else [value])
    return sorted((v for v in values if isinstance(v, str) and len(v) >= 8), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return TOKEN_SHAPES.sub(REDACTED, text)


class _Redacting:
    """Mixin for formatters: redact the whole formatted line (exception text and fields included)."""

    secrets: list[str] = []

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


class TextFormatter(_Redacting, logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None))
        return f"{line} [{ids}]" if ids else line


class JsonLineFormatter(_Redacting, JsonFormatter):
    pass


def formatter(settings: Settings) -> logging.Formatter:
    secrets = secret_values(settings)
    if settings.log_format == "json":
        fmt = JsonLineFormatter("{levelname}{name}{message}", style="{", timestamp="time",   # ISO 8601, UTC
                                rename_fields={"levelname": "level", "name": "logger"}, json_ensure_ascii=False)
    else:
        fmt = TextFormatter(TEXT_FORMAT)
    fmt.secrets = secrets
    return fmt


def configure(settings: Settings) -> None:
    """The root logger: one stream handler in ``CALSYNC_LOG_FORMAT``, at ``CALSYNC_LOG_LEVEL``."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings))
    handler.addFilter(ContextFields())
    handler.addFilter(RedactSecrets(settings))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in LIBRARY_LOGGERS:   # rq gives its loggers their own plain handlers: ours apply to them too
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
