"""Redis mirror of the subscriptions the webhook needs: id → owner + clientState digest.

Written when a subscription is created or renewed, read with one pipelined round trip per
notification request. A miss falls back to MongoDB (read only) and refills the mirror; unknown ids
are remembered briefly so a flood of forged ids does not become a flood of MongoDB reads.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from pymongo.database import Database
from redis import Redis

from service.store import as_utc, utcnow
from service.store import subscriptions as store
from service.webhooks.notifications import SubscriptionRef, client_state_digest

log = logging.getLogger(__name__)

KEY = "calsync:sub:{id}"
UNKNOWN_TTL = 60
AFTER_EXPIRY = timedelta(days=1)  # late deliveries for an expired subscription still find their owner


def key(subscription_id: str) -> str:
    return KEY.format(id=subscription_id)


def remember(conn: Redis, document: dict) -> SubscriptionRef:
    """Mirror one stored subscription document into Redis until a day after it expires."""
    ref = _ref_from(document)
    expires_at = as_utc(document.get("expires_at")) or utcnow()
    ttl = max(int((expires_at + AFTER_EXPIRY - utcnow()).total_seconds()), UNKNOWN_TTL)
    pipe = conn.pipeline()
    pipe.hset(key(ref.subscription_id), mapping={
        "u": ref.user_id, "c": ref.client_state_digest, "r": "1" if ref.rich else "0"})
    pipe.expire(key(ref.subscription_id), ttl)
    pipe.execute()
    return ref


def forget(conn: Redis, subscription_id: str) -> None:
    conn.delete(key(subscription_id))


def lookup(conn: Redis, db: Database, subscription_ids: list[str]) -> dict[str, SubscriptionRef]:
    """Refs for the ids we know; Redis first, MongoDB for the misses. RedisError propagates (→ 5xx)."""
    ids = list(dict.fromkeys(subscription_ids))
    if not ids:
        return {}
    pipe = conn.pipeline(transaction=False)
    for subscription_id in ids:
        pipe.hmget(key(subscription_id), "u", "c", "r")
    found: dict[str, SubscriptionRef] = {}
    misses = []
    for subscription_id, (user_id, digest, rich) in zip(ids, pipe.execute(), strict=True):
        if user_id is None:
            misses.append(subscription_id)
        elif user_id:  # an empty owner marks a recently looked-up unknown id
            found[subscription_id] = SubscriptionRef(subscription_id, user_id.decode(), digest, rich == b"1")
    if misses:
        found.update(_from_store(conn, db, misses))
    return found


def _from_store(conn: Redis, db: Database, ids: list[str]) -> dict[str, SubscriptionRef]:
    found = {}
    for document in store.get_many(db, ids):
        found[document["_id"]] = remember(conn, document)
    unknown = [i for i in ids if i not in found]
    if unknown:
        pipe = conn.pipeline(transaction=False)
        for subscription_id in unknown:
            pipe.hset(key(subscription_id), mapping={"u": "", "c": "", "r": "0"})
            pipe.expire(key(subscription_id), UNKNOWN_TTL)
        pipe.execute()
    return found


def _ref_from(document: dict) -> SubscriptionRef:
    return SubscriptionRef(
        document["_id"], document["user_id"], client_state_digest(document["client_state"]),
        bool(document.get("rich")),
    )


def rebuild(conn: Redis, db: Database) -> int:
    """Re-mirror every stored subscription (after a Redis flush); returns how many."""
    count = 0
    for document in store.listing(db):
        remember(conn, document)
        count += 1
    log.info("mirrored %d subscriptions into Redis", count)
    return count
