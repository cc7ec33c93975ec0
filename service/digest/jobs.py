"""RQ entry points for digests: the minute tick and the per-user send."""

from __future__ import annotations

import logging
import re
from datetime import datetime

from rq.exceptions import DuplicateJobError

from service import runtime
from service.digest import plan
from service.digest.send import deliver
from service.runtime import Runtime
from service.store import users as users_store
from service.store import utcnow
from service.workers import queues

log = logging.getLogger(__name__)

BATCH = 500


def job_id(user_id: str, local_date: str) -> str:
    """``digest-<user>-<yyyy-mm-dd>``, restricted to the characters RQ accepts in an id."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"digest-{user_id}-{local_date}")


def due_users(rt: Runtime, now: datetime) -> list[tuple[str, str]]:
    """Take every user whose digest instant has come: (user_id, local_date) to send, each moved on to its
    following day. Reads only due users (the ``digest.next_at`` index), a batch at a time."""
    due: list[tuple[str, str]] = []
    while batch := users_store.digests_due(rt.db, now, BATCH):
        for user in batch:
            day = plan.advance(rt.db, user, rt.settings.digest_default_time, now)
            if day is not None:
                due.append((user["_id"], day.isoformat()))
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
