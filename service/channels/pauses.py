"""A platform's rate-limit pause, shared by every worker through one Redis key (per Slack workspace, per Teams
tenant): a 429's Retry-After sets it; before each call a job waits out a pause up to what it may still wait, and
a longer one is ``Busy`` (the job retries later). The platform ran nothing it answered 429, so calling again
cannot double a message."""

from __future__ import annotations

import time

from redis import Redis

from service.channels.errors import Busy


def retry_after(value: str | None, default: float = 1.0) -> float:
    """The seconds a Retry-After header asks for (at least 50 ms); ``default`` when it names none or is unreadable."""
    try:
        return max(0.05, float(value)) if value else default
    except ValueError:
        return default


def pause(redis: Redis | None, key: str, seconds: float) -> None:
    """Every worker holds its calls under ``key`` for ``seconds``."""
    if redis is not None:
        redis.set(key, "1", px=max(1, int(seconds * 1000)))


def wait(redis: Redis | None, key: str, allowed: float, what: str) -> float:
    """Wait out the pause under ``key``, if any and not longer than ``allowed`` seconds (else Busy, naming
    ``what``); returns the seconds waited."""
    left = redis.pttl(key) if redis is not None else None
    if not left or left <= 0:
        return 0.0
    if left / 1000 > allowed:
        raise Busy(what, left / 1000)
    time.sleep(left / 1000)
    return left / 1000
