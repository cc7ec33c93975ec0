"""The digest tick: due users (by their indexed next instant) become one send job each."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime

from pymongo.database import Database
from redis import Redis
from rq.exceptions import DuplicateJobError

from service import queues
from service.config import Settings
from service.digest import plan
from service.store import users as users_store
from service.store import utcnow

log = logging.getLogger(__name__)

BATCH = 500


def job_id(user_id: str, local_date: str) -> str:
    """``digest-<user>-<yyyy-mm-dd>``, restricted to the characters RQ accepts in an id."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"digest-{user_id}-{local_date}")


def due_users(db: Database, settings: Settings, now: datetime,
              hand_over: Callable[[str, str], None] | None = None) -> list[tuple[str, str]]:
    """Take every user whose digest instant has come: (user_id, local_date) to send, each moved on to its
    following day. Reads only due users (the ``digest.next_at`` index), a batch at a time.

    ``hand_over(user_id, local_date)`` runs for each digest to send *before* its user is moved on: a tick that
    dies in between (its worker killed, Redis gone mid-enqueue) leaves that user due, and the next tick takes
    them again. The job id and the ``digests_sent`` claim keep it one digest."""
    due: list[tuple[str, str]] = []
    while batch := users_store.digests_due(db, now, BATCH):
        for user in batch:
            day = plan.sendable(user, settings.digest_default_time, now)
            if day is not None and hand_over is not None:
                hand_over(user.id, day.isoformat())
            if plan.advance(db, user, settings.digest_default_time, now) and day is not None:
                due.append((user.id, day.isoformat()))
    return due


def tick(db: Database, redis: Redis, settings: Settings, now: datetime | None = None) -> int:
    """Enqueue send_digest for every due user, each before it is moved on; returns how many were enqueued."""
    enqueued = 0

    def enqueue(user_id: str, local_date: str) -> None:
        nonlocal enqueued
        try:
            queues.enqueue(redis, queues.DIGEST, queues.SEND_DIGEST, user_id, local_date,
                           job_id=job_id(user_id, local_date), unique=True)
            enqueued += 1
        except DuplicateJobError:
            pass   # already queued, or ran (a tick that died after queuing it): the digests_sent record decides

    due_users(db, settings, now or utcnow(), enqueue)
    if enqueued:
        log.info("digest tick enqueued %d digest(s)", enqueued)
    return enqueued
