"""RQ entry points for digests: the minute tick and the per-user send."""

from __future__ import annotations

import logging
import re
from datetime import datetime

from rq.exceptions import DuplicateJobError

from service import runtime
from service.digest import schedule
from service.digest.send import deliver
from service.runtime import Runtime
from service.store import digests as digests_store
from service.store import users as users_store
from service.store import utcnow
from service.workers import queues

log = logging.getLogger(__name__)

BATCH = 500
USER_FIELDS = {"_id": 1, "time_zone": 1, "graph_time_zone": 1, "digest": 1}


def job_id(user_id: str, local_date: str) -> str:
    """``digest-<user>-<yyyy-mm-dd>``, restricted to the characters RQ accepts in an id."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"digest-{user_id}-{local_date}")


def due_users(rt: Runtime, now: datetime) -> list[tuple[str, str]]:
    """(user_id, local_date) for connected users whose send time has passed today with no record yet."""
    due: list[tuple[str, str]] = []
    batch: list[tuple[str, str]] = []

    def flush() -> None:
        done = digests_store.recorded(rt.db, [u for u, _ in batch], [d for _, d in batch])
        due.extend(pair for pair in batch if digests_store.record_id(*pair) not in done)
        batch.clear()

    for user in users_store.connected(rt.db, USER_FIELDS):
        if not (user.get("digest") or {}).get("enabled", True):
            continue
        day = schedule.due_date(schedule.user_zone(user), schedule.send_time(user, rt.settings.digest_default_time),
                                now)
        if day is not None:
            batch.append((user["_id"], day.isoformat()))
        if len(batch) >= BATCH:
            flush()
    flush()
    return due


def tick(rt: Runtime, now: datetime | None = None) -> int:
    """Enqueue send_digest for every due user; returns how many were enqueued."""
    enqueued = 0
    for user_id, local_date in due_users(rt, now or utcnow()):
        try:
            queues.enqueue(rt.redis, queues.DIGEST, "service.digest.jobs.send_digest", user_id, local_date,
                           job_id=job_id(user_id, local_date), unique=True)
            enqueued += 1
        except DuplicateJobError:
            continue  # already queued or just ran; the digests_sent record decides
    if enqueued:
        log.info("digest tick enqueued %d digest(s)", enqueued)
    return enqueued


def digest_tick() -> int:
    """Scheduler entry point (every minute)."""
    return tick(runtime.current())


def send_digest(user_id: str, local_date: str) -> str:
    """Send one user's digest for one local date; safe to retry or run twice."""
    return deliver(runtime.current(), user_id, local_date)
