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


STAT_LABELS = {
    "webhook:accepted": "Change notifications accepted",
    "webhook:lifecycle": "Lifecycle notifications accepted",
    "webhook:dropped:client_state": "Notifications dropped: wrong clientState",
    "webhook:dropped:unknown_subscription": "Notifications dropped: unknown subscription",
    "webhook:dropped:malformed_item": "Notifications dropped: malformed item",
    "webhook:rich:applied": "Rich notifications applied",
    "subscriptions:created": "Subscriptions created", "subscriptions:renewed": "Subscriptions renewed",
    "subscriptions:reauthorized": "Subscriptions reauthorized", "subscriptions:recreated": "Subscriptions recreated",
    "subscriptions:resync": "Resyncs after missed notifications",
    "subscriptions:failed": "Subscription operations failed",
    "subscriptions:skipped": "Subscription operations skipped",
    "subscriptions:postponed": "Renewals postponed (Graph's quiet window)",
    "subscriptions:gone": "Subscriptions gone, nothing to recreate",
}
STAT_PREFIXES = (("webhook:dropped:rich_", "Rich notifications dropped: {}"),
                 ("webhook:rich:fallback:", "Rich notifications synced instead: {}"),
                 ("webhook:dropped:", "Notifications dropped: {}"))


def stat_label(name: str) -> str:
    """A counter's name in words; one this table does not know reads from its own name."""
    if name in STAT_LABELS:
        return STAT_LABELS[name]
    for prefix, words in STAT_PREFIXES:
        if name.startswith(prefix):
            return words.format(name.removeprefix(prefix).replace("_", " "))
    area, _, rest = name.partition(":")
    return f"{area.capitalize()}: {rest.replace(':', ', ').replace('_', ' ')}" if rest else name


def stats(connection: Redis) -> list[tuple[str, str, int]]:
    """The counters kept under ``calsync:stats:*`` (plain INCR strings) as (name, label in words, value)."""
    keys = sorted(connection.scan_iter(match="calsync:stats:*", count=500))
    values = connection.mget(keys) if keys else []
    names = [key.decode().removeprefix("calsync:stats:") for key in keys]
    return [(name, stat_label(name), int(value or 0)) for name, value in zip(names, values, strict=True)]
