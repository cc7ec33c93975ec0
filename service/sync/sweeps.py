"""The sync sweeps the scheduler runs: reconciliation (users silent too long) and the daily window roll.

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
from service.store import sync_state, users
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
    rolled = sync_state.windows_starting_before(db, today_start)
    connected = [user_id for batch in batches(rolled) for user_id in sorted(users.connected_among(db, batch))]
    requested = request_in_batches(redis, connected, "window-roll")
    log.info("window roll requested %d syncs", requested)
    return requested


def batches(ids: list[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def request_in_batches(redis: Redis, user_ids: list[str], reason: str) -> int:
    return sum(len(requests.request_syncs(redis, batch, reason)) for batch in batches(user_ids))
