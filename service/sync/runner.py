"""One user's sync job: take the per-user lock, run delta rounds while the user is dirty, and map Graph's
failure modes onto what the user and the queue need.

The lock (``calsync:lock:sync:{user}``) is owned by the job id, so the same job run again after a crash
takes it back at once. A job that meets a lock held by another job returns at once: the holder re-checks
``dirty`` after releasing it, and one delayed re-check per user covers a holder that died.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pymongo.database import Database
from redis import Redis

from service import locks
from service.config import Settings
from service.graph import GraphClient, GraphError, Throttled, Unauthorized
from service.identity.tokens import ReconnectRequired, require_reconnect
from service.store import users, utcnow
from service.sync import requests, rounds

log = logging.getLogger(__name__)

LOCK_KEY = "calsync:lock:sync:{user_id}"
RECHECK_KEY = "calsync:sync-recheck:{user_id}"
LOCK_SECONDS = 120           # kept alive before every page; a SIGKILLed holder frees it after this
LOCKED_RETRY_SECONDS = 5.0   # another job holds the user's lock: look again then, in case it died
DEFAULT_THROTTLE_SECONDS = 30.0
MAX_ROUNDS = 5               # then requeue behind other users instead of monopolising a worker


class Outcome(StrEnum):
    OK = "ok"
    COALESCED = "coalesced"              # another job holds the user's lock and will cover this request
    SKIPPED = "skipped"                  # not connected
    THROTTLED = "throttled"              # Graph asked us to wait; rescheduled
    NEEDS_RECONNECT = "needs_reconnect"
    LOCK_LOST = "lock-lost"


class UserGone(Exception):  # noqa: N818 - a state, not a bug
    """Graph no longer knows this user (404 on the calendar and on /me): the account was deleted."""


@dataclass
class Report:
    outcome: Outcome
    time_zone: str | None = None     # a newly inferred time zone, when a full round found one


def sync_user(db: Database, redis: Redis, settings: Settings, graph_for: Callable[[str], GraphClient],
              user_id: str, owner: str) -> Report:
    """Bring one user's stored events in line with Graph. ``owner`` (the job id) names the lock's holder."""
    requests.clear_pending(redis, user_id)
    lock = locks.lock(redis, LOCK_KEY.format(user_id=user_id), LOCK_SECONDS, token=owner)
    if not locks.take(lock):
        if redis.set(RECHECK_KEY.format(user_id=user_id), 1, nx=True, ex=int(LOCKED_RETRY_SECONDS) + 5):
            requests.schedule_sync(redis, user_id, LOCKED_RETRY_SECONDS + random.uniform(0, 2))  # noqa: S311
        return Report(Outcome.COALESCED)
    try:
        return _rounds(db, redis, settings, graph_for, user_id, lock)
    finally:
        locks.release(lock)
        if requests.is_dirty(redis, user_id):
            requests.request_sync(redis, user_id, "dirty-after-release")  # a notification after our last look


def _rounds(db: Database, redis: Redis, settings: Settings, graph_for: Callable[[str], GraphClient],
            user_id: str, lock) -> Report:
    report = Report(Outcome.OK)
    for _ in range(MAX_ROUNDS):
        user = users.get(db, user_id)
        requests.take_dirty(redis, user_id)
        if user is None or not user.connected:
            return Report(Outcome.SKIPPED)
        report = _one_round(db, redis, settings, graph_for, user_id, lock)
        if report.outcome != Outcome.OK or not requests.is_dirty(redis, user_id):
            return report
    requests.request_sync(redis, user_id, "still-dirty")
    return report


def _one_round(db: Database, redis: Redis, settings: Settings, graph_for: Callable[[str], GraphClient],
               user_id: str, lock) -> Report:
    """One delta round with Graph's failure modes mapped to what the user and the queue need."""
    graph = graph_for(user_id)
    try:
        result = rounds.run_round(db, settings, user_id, graph, keep=lambda: locks.keep(lock))
    except Throttled as exc:
        delay = exc.retry_after if exc.retry_after is not None else DEFAULT_THROTTLE_SECONDS
        delay += random.uniform(0.1, 1.0 + delay / 10)  # noqa: S311 - jitter spreads the herd
        users.record_sync_failure(db, user_id, utcnow(), "throttled", f"{exc.status} {exc.code}".strip())
        requests.defer_sync(redis, user_id, delay, "throttled")
        log.info("sync of user %s throttled; again in %.1fs", user_id, delay)
        return Report(Outcome.THROTTLED)
    except ReconnectRequired:
        users.record_sync_failure(db, user_id, utcnow(), "needs_reconnect", "reconnect required")
        return Report(Outcome.NEEDS_RECONNECT)
    except Unauthorized:
        require_reconnect(db, redis, user_id, "Graph refused a freshly refreshed token")  # mails the user once
        users.record_sync_failure(db, user_id, utcnow(), "needs_reconnect", "401 after token refresh")
        return Report(Outcome.NEEDS_RECONNECT)
    except locks.LockLost:
        log.warning("sync of user %s lost its lock mid-round; the new holder continues", user_id)
        return Report(Outcome.LOCK_LOST)
    except GraphError as exc:
        if exc.status == 404 and _gone(graph):
            raise UserGone(user_id) from None
        users.record_sync_failure(db, user_id, utcnow(), "error", f"{exc.status} {exc.code}".strip())
        raise   # RQ retries with back-off (requests.SYNC_RETRY)
    users.record_sync_success(db, user_id, utcnow(), result.label, result.applied.lag_seconds)
    zone = rounds.infer_time_zone(db, user_id) if result.full else None  # daily at least (window roll)
    log.info("synced user %s: %s, %d pages, %d upserted, %d deleted, %d stale", user_id, result.label,
             result.pages, result.applied.upserted, result.applied.deleted + result.removed_missing,
             result.applied.stale)
    return Report(Outcome.OK, zone)


def _gone(graph: GraphClient) -> bool:
    """Graph said 404 to the calendar: is /me gone too (the account no longer exists)?"""
    try:
        graph.get_json("me")
    except GraphError as exc:
        return exc.status == 404
    return False
