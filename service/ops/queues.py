"""Queue health from RQ's own registries."""

from __future__ import annotations

from redis import Redis
from rq import Worker
from rq.registry import FailedJobRegistry

from service import queues


def queue_health(connection: Redis) -> list[dict]:
    """Per queue: waiting, running, scheduled, failed jobs."""
    rows = []
    for name in queues.ALL:
        queue = queues.get_queue(name, connection)
        rows.append({
            "queue": name,
            "queued": queue.count,
            "started": queue.started_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count,
            "deferred": queue.deferred_job_registry.count,
            "failed": queue.failed_job_registry.count,
        })
    return rows


def worker_count(connection: Redis) -> int:
    return len(Worker.all(connection=connection))


def requeue_failed(connection: Redis, name: str) -> int:
    """Put every failed job of one queue back on it; returns how many."""
    registry = FailedJobRegistry(queue=queues.get_queue(name, connection))
    job_ids = registry.get_job_ids()
    for job_id in job_ids:
        registry.requeue(job_id)
    return len(job_ids)


def stats(connection: Redis) -> list[tuple[str, str | None, int]]:
    """The counters kept under ``calsync:stats:*`` (plain INCR strings) as (name, label, value); label is None."""
    keys = sorted(connection.scan_iter(match="calsync:stats:*", count=500))
    values = connection.mget(keys) if keys else []
    return [(key.decode().removeprefix("calsync:stats:"), None, int(value or 0))
            for key, value in zip(keys, values, strict=True)]
