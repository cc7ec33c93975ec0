"""The sync sweeps the scheduler runs: reconciliation (users silent too long), the daily window roll,
the poll of calendars notifications may not cover, and retention.

Each reads the ids it needs through an index first, then asks for syncs a batch per Redis round trip, so
no cursor stays open while it works.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from pymongo.database import Database
from redis import Redis

from service.config import Settings
from service.store import calendars, events, users
from service.sync import requests, rounds

log = logging.getLogger(__name__)

BATCH = 500


def reconcile(db: Database, redis: Redis, settings: Settings, now: datetime) -> int:
    """Delta-sync users with no sync for ``reconcile_hours`` (Graph can drop notifications silently)."""
    cutoff = now - timedelta(hours=settings.reconcile_hours)
    requested = request_in_batches(redis, users.stale(db, cutoff), "reconcile")
    log.info("reconcile sweep requested %d syncs", requested)
    return requested


def window_roll(db: Database, redis: Redis, settings: Settings, now: datetime) -> int:
    """Re-baseline users whose synced window starts before today's (the daily roll)."""
    today_start, _ = rounds.window_for(settings, now)
    rolled = calendars.windows_starting_before(db, today_start)
    connected = [user_id for batch in batches(rolled) for user_id in sorted(users.connected_among(db, batch))]
    requested = request_in_batches(redis, connected, "window-roll")
    log.info("window roll requested %d syncs", requested)
    return requested


POLL_EVERY = timedelta(minutes=15)


def polled_calendars(db: Database, redis: Redis, now: datetime) -> int:
    """Sync users with a calendar other than their default one last read more than ``POLL_EVERY`` ago.

    A delegated subscription on ``users/{id}/events`` is not notified for a copy of a calendar someone
    shared (outlook-change-notifications-overview: shared folders need application permissions), and users
    report it misses secondary calendars too (microsoft-graph-docs-contrib #51), so these calendars are
    polled; an unchanged calendar costs one delta request."""
    due = calendars.polled_before(db, now - POLL_EVERY)
    connected = [user_id for batch in batches(due) for user_id in sorted(users.connected_among(db, batch))]
    requested = request_in_batches(redis, connected, "poll-calendars")
    log.info("calendar poll requested %d syncs", requested)
    return requested


def retention(db: Database, settings: Settings, now: datetime) -> int:
    """Forget every event that ended more than ``retention_days`` ago."""
    removed = events.delete_ended_before(db, now - timedelta(days=settings.retention_days))
    log.info("retention sweep removed %d events that ended over %d days ago", removed, settings.retention_days)
    return removed


def batches(ids: list[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def request_in_batches(redis: Redis, user_ids: list[str], reason: str) -> int:
    return sum(len(requests.request_syncs(redis, batch, reason)) for batch in batches(user_ids))
