"""The renewal sweep: renew subscriptions before they expire, spread per tenant; repair lost ones.

The sweep never bursts: each tenant gets at most ``RENEWALS_PER_SECOND_PER_TENANT`` renewals scheduled
per second (200 per 20 s, a fifth of Graph's 1,000 requests per 20 s per tenant, leaving room for
creates, reauthorizations and the sync). What does not fit in one sweep's span waits for the next
sweep, well inside the renewal margin (100,000 subscriptions due at once take under 3 hours).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymongo.database import Database
from redis import Redis

from service import queues
from service.config import Settings
from service.store import subscriptions as store
from service.store import users

log = logging.getLogger(__name__)

RENEWALS_PER_SECOND_PER_TENANT = 10
SWEEP_SPAN_SECONDS = 300            # the scheduler runs the sweep every 5 minutes
CLAIM_GRACE = timedelta(minutes=15)  # a scheduled renewal that never ran is picked up again after this
NOT_CONNECTED_RECHECK = timedelta(hours=1)
REPAIR_AFTER = timedelta(minutes=10)      # leave a fresh connect's own ensure_subscription job alone
REPAIR_GUARD = "calsync:subscription-repair:{user_id}"
REPAIR_EVERY_SECONDS = 15 * 60            # at most one repair attempt per user in this time
SWEEP_SCAN_LIMIT = 100_000


def renewal_sweep(db: Database, redis: Redis, settings: Settings, now: datetime) -> dict:
    """Schedule renewals for subscriptions inside the margin, spread per tenant; returns counts."""
    plan = plan_renewals(db, now, settings.renew_margin_minutes)
    queue = queues.get_queue(queues.SUBSCRIPTIONS, redis)
    for subscription_id, delay in plan.scheduled:
        store.postpone(db, subscription_id, now + timedelta(seconds=delay) + CLAIM_GRACE)
        options = {"retry": None, "job_timeout": 120, "result_ttl": 3600, "failure_ttl": 7 * 86400}
        if delay <= 0:
            queue.enqueue(queues.RENEW_SUBSCRIPTION, subscription_id, **options)
        else:
            queue.enqueue_in(timedelta(seconds=delay), queues.RENEW_SUBSCRIPTION, subscription_id, **options)
    for subscription_id in plan.not_connected:
        store.postpone(db, subscription_id, now + NOT_CONNECTED_RECHECK)
    counts = {"scheduled": len(plan.scheduled), "not_connected": len(plan.not_connected),
              "deferred": plan.deferred, "repaired": repair_lost_subscriptions(db, redis, now),
              "switches": schedule_switches(db, redis, now)}
    log.info("renewal sweep: %s", counts)
    return counts


SWITCHES_PER_SWEEP = 1_000


def schedule_switches(db: Database, redis: Redis, now: datetime, rate: float = RENEWALS_PER_SECOND_PER_TENANT) -> int:
    """Subscriptions marked for a replacement without a gap (``calsync init-db`` marks those made before calsync
    asked for immutable ids) get a ``switch_subscription`` job each, spread per tenant like renewals."""
    per_tenant: dict[str, int] = defaultdict(int)
    queue = queues.get_queue(queues.SUBSCRIPTIONS, redis)
    marked = store.marked_for_recreation(db, now, SWITCHES_PER_SWEEP)
    for subscription in marked:
        delay = per_tenant[subscription.tenant_id or "-"] / rate
        per_tenant[subscription.tenant_id or "-"] += 1
        store.postpone(db, subscription.id, now + timedelta(seconds=delay) + CLAIM_GRACE)
        options = {"retry": None, "job_timeout": 300, "result_ttl": 3600, "failure_ttl": 7 * 86400}
        if delay <= 0:
            queue.enqueue(queues.SWITCH_SUBSCRIPTION, subscription.id, **options)
        else:
            queue.enqueue_in(timedelta(seconds=delay), queues.SWITCH_SUBSCRIPTION, subscription.id, **options)
    return len(marked)


def repair_lost_subscriptions(db: Database, redis: Redis, now: datetime) -> int:
    """Connected users left without a live subscription (recreation failed, or it was never made) get one.

    Graph can drop a subscription and our recreation can fail too (Graph down, retries spent): without
    this the user would silently stop syncing. One attempt per user every 15 minutes.
    """
    lost = users.missing_subscription_since_before(db, now - REPAIR_AFTER)
    queued = 0
    for user_id in lost:
        if redis.set(REPAIR_GUARD.format(user_id=user_id), 1, nx=True, ex=REPAIR_EVERY_SECONDS):
            queues.enqueue(redis, queues.SUBSCRIPTIONS, queues.ENSURE_SUBSCRIPTION, user_id)
            queued += 1
    if queued:
        log.warning("renewal sweep: %d connected user(s) had no live subscription; recreating", queued)
    return queued


@dataclass
class Plan:
    scheduled: list[tuple[str, float]] = field(default_factory=list)   # (subscription id, delay in seconds)
    not_connected: list[str] = field(default_factory=list)
    deferred: int = 0


def plan_renewals(db: Database, now: datetime, margin_minutes: int, rate: float = RENEWALS_PER_SECOND_PER_TENANT,
                  span: float = SWEEP_SPAN_SECONDS) -> Plan:
    """Which due subscriptions to renew this sweep and when: at most ``rate`` per second per tenant."""
    plan = Plan()
    due = store.due_for_renewal(db, now + timedelta(minutes=margin_minutes), now, SWEEP_SCAN_LIMIT)
    connected = users.connected_among(db, (s.user_id for s in due))
    per_tenant: dict[str, int] = defaultdict(int)
    budget = int(rate * span)
    for subscription in due:  # soonest expiry first
        if subscription.user_id not in connected:
            plan.not_connected.append(subscription.id)
            continue
        tenant = subscription.tenant_id or "-"
        position = per_tenant[tenant]
        if position >= budget:
            plan.deferred += 1
            continue
        per_tenant[tenant] += 1
        plan.scheduled.append((subscription.id, position / rate))
    return plan
