"""RQ entry points for subscriptions: create after connect, lifecycle events, and the spread-out renewal sweep.

The sweep never bursts: each tenant gets at most ``RENEWALS_PER_SECOND_PER_TENANT`` renewals scheduled
per second (200 per 20 s, a fifth of Graph's 1,000 requests per 20 s per tenant, leaving room for
creates, reauthorizations and the sync). What does not fit in one sweep's span waits for the next
sweep, well inside the renewal margin (100,000 subscriptions due at once take under 3 hours).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from service import runtime
from service.store import subscriptions as store
from service.store import users, utcnow
from service.subscriptions import lifecycle
from service.workers import queues

log = logging.getLogger(__name__)

RENEWALS_PER_SECOND_PER_TENANT = 10
SWEEP_SPAN_SECONDS = 300            # the scheduler runs the sweep every 5 minutes
CLAIM_GRACE = timedelta(minutes=15)  # a scheduled renewal that never ran is picked up again after this
NOT_CONNECTED_RECHECK = timedelta(hours=1)
REPAIR_AFTER = timedelta(minutes=10)      # leave a fresh connect's own ensure_subscription job alone
REPAIR_GUARD = "calsync:subscription-repair:{user_id}"
REPAIR_EVERY_SECONDS = 15 * 60            # at most one repair attempt per user in this time
SWEEP_SCAN_LIMIT = 100_000


def ensure_subscription(user_id: str) -> str | None:
    """Create (or replace) the user's subscription; the id, or None when the user is not connected."""
    from service.auth.tokens import ReconnectRequired

    rt = runtime.current()
    try:
        document = lifecycle.create(rt, user_id)
    except lifecycle.NotConnected:
        log.info("no subscription for user %s: not connected", user_id)
        return None
    except ReconnectRequired as exc:
        log.info("no subscription for user %s: %s", user_id, exc)
        return None
    from service.workers.jobs import request_sync

    request_sync(rt, user_id, "subscribed")  # changes between connect and the subscription's birth
    return document["_id"]


def handle_lifecycle(subscription_id: str, lifecycle_event: str) -> str:
    """Do the documented recovery for one lifecycle notification (already verified by the receiver)."""
    from service.webhooks.receiver import LIFECYCLE_PENDING
    from service.workers.jobs import request_sync

    rt = runtime.current()
    rt.redis.delete(LIFECYCLE_PENDING.format(subscription_id=subscription_id, event=lifecycle_event))
    document = store.get(rt.db, subscription_id)
    if document is None:
        log.info("lifecycle %s for unknown subscription %s ignored", lifecycle_event, subscription_id)
        return lifecycle.GONE
    user_id = document["user_id"]
    if lifecycle_event == "missed":
        request_sync(rt, user_id, "missed")
        return "resync"
    if lifecycle_event == "subscriptionRemoved":
        lifecycle.mark_removed(rt, document, "subscriptionRemoved lifecycle notification")
        return lifecycle.RECREATED if lifecycle.recreate(rt, user_id, "subscription-removed") else lifecycle.GONE
    if lifecycle_event == "reauthorizationRequired":
        return lifecycle.on_reauthorization_required(rt, subscription_id)
    log.warning("unknown lifecycle event %r for subscription %s", lifecycle_event, subscription_id)
    return "ignored"


def renew_subscription(subscription_id: str) -> str:
    """Renew one subscription (scheduled by the sweep)."""
    return lifecycle.renew(runtime.current(), subscription_id)


def renewal_sweep(now_iso: str | None = None) -> dict:
    """Schedule renewals for subscriptions inside the margin, spread per tenant; returns counts."""
    rt = runtime.current()
    now = datetime.fromisoformat(now_iso) if now_iso else utcnow()
    plan = plan_renewals(rt.db, now, rt.settings.renew_margin_minutes)
    queue = queues.get_queue(queues.SUBSCRIPTIONS, rt.redis)
    for subscription_id, delay in plan.scheduled:
        store.postpone(rt.db, subscription_id, now + timedelta(seconds=delay) + CLAIM_GRACE)
        options = {"retry": None, "job_timeout": 120, "result_ttl": 3600, "failure_ttl": 7 * 86400}
        func = "service.subscriptions.jobs.renew_subscription"
        if delay <= 0:
            queue.enqueue(func, subscription_id, **options)
        else:
            queue.enqueue_in(timedelta(seconds=delay), func, subscription_id, **options)
    for subscription_id in plan.not_connected:
        store.postpone(rt.db, subscription_id, now + NOT_CONNECTED_RECHECK)
    counts = {"scheduled": len(plan.scheduled), "not_connected": len(plan.not_connected),
              "deferred": plan.deferred, "repaired": repair_lost_subscriptions(rt, now)}
    log.info("renewal sweep: %s", counts)
    return counts


def repair_lost_subscriptions(rt, now: datetime) -> int:
    """Connected users left without a live subscription (recreation failed, or it was never made) get one.

    Graph can drop a subscription and our recreation can fail too (Graph down, retries spent): without
    this the user would silently stop syncing. One attempt per user every 15 minutes.
    """
    lost = users.missing_subscription_since_before(rt.db, now - REPAIR_AFTER)
    queued = 0
    for user_id in lost:
        if rt.redis.set(REPAIR_GUARD.format(user_id=user_id), 1, nx=True, ex=REPAIR_EVERY_SECONDS):
            queues.enqueue(rt.redis, queues.SUBSCRIPTIONS, "service.subscriptions.jobs.ensure_subscription", user_id)
            queued += 1
    if queued:
        log.warning("renewal sweep: %d connected user(s) had no live subscription; recreating", queued)
    return queued


class Plan:
    def __init__(self) -> None:
        self.scheduled: list[tuple[str, float]] = []
        self.not_connected: list[str] = []
        self.deferred = 0


def plan_renewals(db, now: datetime, margin_minutes: int, rate: float = RENEWALS_PER_SECOND_PER_TENANT,
                  span: float = SWEEP_SPAN_SECONDS) -> Plan:
    """Which due subscriptions to renew this sweep and when: at most ``rate`` per second per tenant."""
    plan = Plan()
    due = list(store.due_for_renewal(db, now + timedelta(minutes=margin_minutes), now, SWEEP_SCAN_LIMIT))
    status = users.connection_statuses(db, (d["user_id"] for d in due))
    per_tenant: dict[str, int] = defaultdict(int)
    budget = int(rate * span)
    for document in due:  # soonest expiry first
        if status.get(document["user_id"]) != "connected":
            plan.not_connected.append(document["_id"])
            continue
        tenant = document.get("tenant_id") or "-"
        position = per_tenant[tenant]
        if position >= budget:
            plan.deferred += 1
            continue
        per_tenant[tenant] += 1
        plan.scheduled.append((document["_id"], position / rate))
    return plan
