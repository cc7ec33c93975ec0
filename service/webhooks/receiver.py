"""What the webhook does with a parsed collection: look up, verify, queue. Redis only on this path.

Per request: one pipelined Redis read for every subscription id in the batch (MongoDB only on a cache
miss, read only), then one pipelined ``request_syncs`` for all distinct owners, then one
pipeline of counters. Nothing here calls Graph or writes MongoDB; the owner's ``last_notification_at``
is written by a small job at most once a minute per user. Any RedisError propagates so the route
answers 5xx and Graph redelivers.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from pymongo.database import Database
from redis import Redis

from service.store import utcnow
from service.subscriptions import mirror
from service.subscriptions.lifecycle import LIFECYCLE_PENDING, LIFECYCLE_PENDING_TTL
from service.sync.requests import request_sync, request_syncs
from service.webhooks.notifications import MALFORMED_ITEM, Collection, Notification, Verdict, verify
from service.workers import queues

log = logging.getLogger(__name__)

STATS = "calsync:stats:webhook:{name}"
SEEN_KEY = "calsync:webhook:seen:{user_id}"
SEEN_EVERY = 60


def stat_key(name: str) -> str:
    return STATS.format(name=name)


def receive_changes(redis: Redis, db: Database, collection: Collection) -> Verdict:
    """Verify a change-notification collection and queue the work; returns what was kept and dropped."""
    verdict = _verified(redis, db, collection)
    rich, plain_users = defaultdict(list), []
    for item, ref in verdict.accepted:
        if ref.rich and collection.validation_tokens and (item.encrypted or item.change_type == "deleted"):
            rich[ref.user_id].append(_rich_item(item))
        else:
            plain_users.append(ref.user_id)
    if plain_users:
        request_syncs(redis, list(dict.fromkeys(plain_users)), "notification")
    for user_id, items in rich.items():
        queues.enqueue(redis, queues.SYNC, queues.APPLY_RICH, user_id, items, list(collection.validation_tokens))
    _record(redis, verdict, "accepted")
    return verdict


def receive_lifecycle(redis: Redis, db: Database, collection: Collection) -> Verdict:
    """Verify lifecycle notifications; ``missed`` asks for a sync, the others queue one job per subscription."""
    verdict = _verified(redis, db, collection)
    queued = set()
    for item, ref in verdict.accepted:
        event = item.lifecycle_event
        if event == "missed":
            request_sync(redis, ref.user_id, "missed")
            continue
        if (ref.subscription_id, event) in queued:
            continue
        queued.add((ref.subscription_id, event))
        guard = LIFECYCLE_PENDING.format(subscription_id=ref.subscription_id, event=event)
        if redis.set(guard, 1, nx=True, ex=LIFECYCLE_PENDING_TTL):
            queues.enqueue(redis, queues.SUBSCRIPTIONS, queues.HANDLE_LIFECYCLE, ref.subscription_id, event)
    _record(redis, verdict, "lifecycle")
    return verdict


def _verified(redis: Redis, db: Database, collection: Collection) -> Verdict:
    refs = mirror.lookup(redis, db, [item.subscription_id for item in collection.items])
    verdict = verify(collection.items, refs)
    if collection.malformed:
        verdict.dropped[MALFORMED_ITEM] += collection.malformed
    return verdict


def _rich_item(item: Notification) -> dict:
    """The primitives the rich job needs (the encrypted blob stays encrypted in Redis)."""
    return {"subscription_id": item.subscription_id, "tenant_id": item.tenant_id,
            "change_type": item.change_type, "resource_id": item.resource_id,
            "encrypted": dict(item.encrypted) if item.encrypted else None}


def _record(redis: Redis, verdict: Verdict, accepted_name: str) -> None:
    """Count accepted and dropped items, and stamp each owner's last notification (throttled)."""
    now = utcnow()
    pipe = redis.pipeline(transaction=False)
    pipe.incrby(stat_key(accepted_name), len(verdict.accepted))
    for reason, count in verdict.dropped.items():
        pipe.incrby(stat_key(f"dropped:{reason}"), count)
    users = {ref.user_id: ref.subscription_id for _, ref in verdict.accepted}
    for user_id in users:
        pipe.set(SEEN_KEY.format(user_id=user_id), now.isoformat(), nx=True, ex=SEEN_EVERY)
    results = pipe.execute()
    fresh_flags = results[len(results) - len(users):]
    for (user_id, subscription_id), fresh in zip(users.items(), fresh_flags, strict=True):
        if fresh:
            queues.enqueue(redis, queues.SYNC, queues.RECORD_NOTIFICATION, user_id, subscription_id, now.isoformat())
    if verdict.dropped:
        log.warning("dropped notifications: %s", ", ".join(f"{r}={c}" for r, c in sorted(verdict.dropped.items())))
