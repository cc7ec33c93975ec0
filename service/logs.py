"""Logging set-up with a filter that keeps configured secrets out of every log line."""

from __future__ import annotations

import logging

from service.config import SECRET_FIELDS, Settings

REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Replace any configured secret value that slips into a formatted message."""

    def __init__(self, settings: Settings):
        super().__init__()
        values = []
        for name in SECRET_FIELDS:
            value = getattr(settings, name)
            values.extend(value if isinstance(value, tuple) else [value])
        self.secrets = [v for v in values if isinstance(v, str) and len(v) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, None
        return True


def configure(settings: Settings, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(settings))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
