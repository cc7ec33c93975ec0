"""The one distributed lock calsync uses: redis-py's token-based ``Lock``, with one way of handling its loss.

A lock is held with :func:`held`; a holder doing long work calls :func:`keep` between steps, which
extends the lock or raises :class:`LockLost` if it expired and someone else may hold it now, so the
holder stops before writing anything more. Releasing a lock that was lost is logged, never raised:
the work is done and the new holder carries on.

Tokens are ours to choose: a sync job uses its job id, so the same job run again after a crash takes its
own lock back at once instead of waiting for it to expire; the scheduler uses its identity.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError
from redis.lock import Lock

log = logging.getLogger(__name__)


class LockBusy(Exception):  # noqa: N818 - a state, not a bug
    """Someone else holds the lock (and kept it past our wait)."""


class LockLost(Exception):  # noqa: N818
    """Our lock expired while we worked; another holder may be acting now."""


def lock(redis: Redis, name: str, seconds: float, token: str | None = None) -> Lock:
    """An unacquired lock; ``token`` names the owner (random when None)."""
    handle = Lock(redis, name, timeout=seconds, thread_local=False)
    if token is not None:
        handle.local.token = token.encode()
    return handle


def take(handle: Lock, wait: float = 0) -> bool:
    """Acquire ``handle``, waiting up to ``wait`` seconds; True also when its token already holds it."""
    token = handle.local.token
    if handle.acquire(blocking=wait > 0, blocking_timeout=wait or None, token=token):
        return True
    if token is not None and handle.owned():
        handle.reacquire()   # our own token: a run of the same job after a crash
        return True
    return False


def keep(handle: Lock) -> None:
    """Reset the lock's time to live; LockLost if it is no longer ours."""
    try:
        handle.reacquire()
    except LockError:
        raise LockLost(handle.name) from None


def release(handle: Lock) -> None:
    """Let go; a lock that already expired (and may be someone else's now) is only logged."""
    try:
        handle.release()
    except LockError:
        log.warning("lock %s expired before it was released", handle.name)


@contextmanager
def held(redis: Redis, name: str, seconds: float, wait: float = 0, token: str | None = None) -> Iterator[Lock]:
    """Hold ``name`` for the block, or raise LockBusy; see :func:`keep` for long work."""
    handle = lock(redis, name, seconds, token)
    if not take(handle, wait):
        raise LockBusy(name)
    try:
        yield handle
    finally:
        release(handle)
