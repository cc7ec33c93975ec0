"""RQ queue names, defined once. The order is the priority order a worker drains them in."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis
from rq import Queue, Retry
from rq.job import Job

SYNC = "sync"                      # per-user delta syncs triggered by notifications: users wait on these
SUBSCRIPTIONS = "subscriptions"    # create / renew / reauthorize / recreate Graph subscriptions
DIGEST = "digest"                  # daily digest emails
MAINTENANCE = "maintenance"        # sweeps: renewal, reconciliation, window roll

ALL = (SYNC, SUBSCRIPTIONS, DIGEST, MAINTENANCE)

DEFAULT_RETRY = Retry(max=3, interval=[10, 60, 300])


def get_queue(name: str, connection: Redis) -> Queue:
    if name not in ALL:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=connection)


def enqueue(
    connection: Redis,
    queue: str,
    func: Callable | str,
    *args,
    retry: Retry | None = DEFAULT_RETRY,
    job_timeout: int = 300,
    **options,
) -> Job:
    """Enqueue ``func(*args)`` with retries; arguments must be JSON-able primitives."""
    return get_queue(queue, connection).enqueue(
        func, *args, retry=retry, job_timeout=job_timeout, result_ttl=3600, failure_ttl=7 * 86400, **options
    )
