"""RQ entry points. Thin: primitive arguments in, one domain call out, exceptions go to RQ."""

from __future__ import annotations

import logging

from service import runtime

log = logging.getLogger(__name__)


def ping(value: str) -> str:
    """A no-op job used by health checks and the Procfile worker test."""
    rt = runtime.current()
    rt.redis.set(f"calsync:ping:{value}", "pong", ex=300)
    return value
