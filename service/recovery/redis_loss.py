"""Rebuilding what an emptied Redis held, from MongoDB.

What Redis lost and where it comes back from:

- the webhook's subscription mirror: rebuilt from ``subscriptions`` (a miss also falls back to MongoDB meanwhile);
- notifications acknowledged but not yet synced (dirty flags, the request stream, queued and scheduled syncs):
  every connected user is synced (a delta round per calendar: one request when nothing changed), the most
  recently notified first. Recording each acknowledged notification in MongoDB instead would put a MongoDB
  write on the webhook's one-Redis-round-trip path, to save what is at most one cheap delta request per user;
- digests the tick took (``next_at`` already moved on) whose job was lost: queued again from ``digest.last_date``,
  the ``digests_sent`` claim keeping them once;
- preps claimed but not finished: queued again (the prep tick skips every recorded prep); the others and
  subscription renewals: the prep tick and the renewal sweep derive them from MongoDB, and their last-run times
  went with Redis, so the scheduler runs each at its next tick;
- outbound deliveries waiting for a retry: scheduled again at their own ``next_attempt_at`` (up to
  ``REQUEUE_DELIVERIES``, soonest first), so a retry keeps its time instead of waiting for the outbox sweep,
  which only takes deliveries late by its grace, once a minute; the delivery's lease keeps each attempt single;
- lifecycle jobs not yet run: a ``reauthorizationRequired`` or an expiry is met by the renewal sweep; a lost
  ``subscriptionRemoved`` is found at the subscription's next renewal (404: recreated), the reconcile sweep
  syncing the user meanwhile once silent for ``CALSYNC_RECONCILE_HOURS``.

Locks and guards are simply gone: a sync running through the loss keeps writing under its own compare-and-set
rules, and the next one starts afresh.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pymongo.database import Database
from redis import Redis
from rq.exceptions import DuplicateJobError

from service import outbox, queues
from service.digest import tick as digest_tick
from service.insights import days
from service.recovery import epoch
from service.store import as_utc, digests, preps, users, utcnow
from service.store import outbound as outbound_store
from service.store import recovery as store
from service.subscriptions import mirror
from service.sync import sweeps

log = logging.getLogger(__name__)

REASON = "redis-lost"
REQUEUE_DELIVERIES = 10_000      # beyond these, the outbox sweep queues each once it is due


def recover(db: Database, redis: Redis, now: datetime) -> dict:
    """Everything Redis lost that MongoDB can tell; idempotent. Returns what it did, by kind."""
    mirrored = mirror.rebuild(redis, db)
    order = store.connected_by_recent_notification(db)
    requested = sweeps.request_in_batches(redis, order, REASON)
    digests_queued = requeue_taken_digests(db, redis, now)
    preps_queued = requeue_unfinished_preps(db, redis, now)
    deliveries_queued = requeue_pending_deliveries(db, redis, now)
    counts = {"mirrored": mirrored, "users": len(order), "syncs_requested": requested, "digests_queued": digests_queued,
              "preps_queued": preps_queued, "deliveries_queued": deliveries_queued}
    log.warning("rebuilt from MongoDB after losing Redis: %s", counts)
    return counts


def requeue_taken_digests(db: Database, redis: Redis, now: datetime) -> int:
    """Queue again each digest the tick took whose day is not over and that no job finished: none recorded
    or failed now, one still claimed once its claim can be retaken (its worker may have died with it)."""
    taken = store.digests_taken(db)
    people = users.by_ids(db, [user_id for user_id, _ in taken])
    queued = 0
    for user_id, local_date in taken:
        user = people.get(user_id)
        if user is None or local_date < now.astimezone(days.user_zone(user)).date().isoformat():
            continue
        record = digests.get(db, user_id, local_date)
        status = record and record.get("status")
        if status in (digests.SENT, digests.SKIPPED):
            continue
        delay = digests.STALE_CLAIM + timedelta(minutes=1) if status == digests.SENDING else None
        queued += _enqueue_digest(redis, user_id, local_date, delay)
    return queued


def requeue_unfinished_preps(db: Database, redis: Redis, now: datetime) -> int:
    """Queue again each prep claimed and not finished whose meeting has not started: the prep tick leaves every
    recorded prep alone, so a job lost mid-send would otherwise never finish it. ``prep.deliver`` retakes a
    failed claim at once and a ``sending`` one once stale, so each goes out at most once."""
    queued = 0
    for record in store.preps_unfinished(db, now):
        args = (record["user_id"], record["meeting"], as_utc(record["start"]).isoformat())
        if record["status"] == preps.SENDING:
            queues.get_queue(queues.PREP, redis).enqueue_in(
                preps.STALE_CLAIM + timedelta(minutes=1), queues.SEND_PREP, *args, retry=queues.DEFAULT_RETRY,
                job_timeout=120, result_ttl=3600, failure_ttl=7 * 86400)
        else:
            queues.enqueue(redis, queues.PREP, queues.SEND_PREP, *args, job_timeout=120)
        queued += 1
    return queued


def requeue_pending_deliveries(db: Database, redis: Redis, now: datetime) -> int:
    """Schedule again each outbound delivery waiting for its retry, at the time MongoDB says it is due (now, if
    that has passed). Paused endpoints' deliveries stay put, as the sweep leaves them."""
    paused = {e.id for e in outbound_store.endpoints(db) if e.status != outbound_store.ACTIVE}
    pending = outbound_store.pending_schedule(db, REQUEUE_DELIVERIES, exclude_endpoints=paused)
    return sum(outbox.schedule(redis, delivery_id, at if at and at > now else None) for delivery_id, at in pending)


def _enqueue_digest(redis: Redis, user_id: str, local_date: str, delay: timedelta | None) -> int:
    job_id = digest_tick.job_id(user_id, local_date)
    queue = queues.get_queue(queues.DIGEST, redis)
    try:
        if delay is None:
            queues.enqueue(redis, queues.DIGEST, queues.SEND_DIGEST, user_id, local_date, job_id=job_id, unique=True)
        else:
            queue.enqueue_in(delay, queues.SEND_DIGEST, user_id, local_date, job_id=job_id, retry=queues.DEFAULT_RETRY,
                             job_timeout=300, result_ttl=3600, failure_ttl=7 * 86400)
    except DuplicateJobError:
        return 0
    return 1


def watch(db: Database, redis: Redis) -> epoch.EpochWatch:
    """The epoch check a scheduler process runs each tick, recovering with :func:`recover` when Redis lost data."""
    return epoch.EpochWatch(db, redis, lambda _epoch, _reason: recover(db, redis, utcnow()))
