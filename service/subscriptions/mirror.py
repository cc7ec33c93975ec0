"""Redis mirror of the subscriptions the webhook needs: id → owner + clientState digest.

Written when a subscription is created or renewed, read with one pipelined round trip per
notification request. A miss falls back to MongoDB (read only) and refills the mirror; unknown ids
are remembered briefly so a flood of forged ids does not become a flood of MongoDB reads.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from pymongo.database import Database
from redis import Redis

from service.store import subscriptions as store
from service.store import utcnow
from service.store.records import Subscription

log = logging.getLogger(__name__)

KEY = "calsync:sub:{id}"
UNKNOWN_TTL = 60
AFTER_EXPIRY = timedelta(days=1)  # late deliveries for an expired subscription still find their owner


@dataclass(frozen=True)
class SubscriptionRef:
    """What the webhook needs of one subscription: its owner and the digest of its clientState."""

    subscription_id: str
    user_id: str
    client_state_digest: bytes
    rich: bool = False


def client_state_digest(client_state: str) -> bytes:
    """SHA-256 of a clientState: the mirror never holds the secret itself."""
    return hashlib.sha256(client_state.encode()).digest()


def key(subscription_id: str) -> str:
    return KEY.format(id=subscription_id)


def remember(conn: Redis, subscription: Subscription) -> SubscriptionRef:
    """Mirror one stored subscription into Redis until a day after it expires."""
    ref = _ref_from(subscription)
    expires_at = subscription.expires_at or utcnow()
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
    for subscription in store.get_many(db, ids):
        found[subscription.id] = remember(conn, subscription)
    unknown = [i for i in ids if i not in found]
    if unknown:
        pipe = conn.pipeline(transaction=False)
        for subscription_id in unknown:
            pipe.hset(key(subscription_id), mapping={"u": "", "c": "", "r": "0"})
            pipe.expire(key(subscription_id), UNKNOWN_TTL)
        pipe.execute()
    return found


def _ref_from(subscription: Subscription) -> SubscriptionRef:
    return SubscriptionRef(subscription.id, subscription.user_id, subscription.client_state_digest, subscription.rich)


def rebuild(conn: Redis, db: Database) -> int:
    """Re-mirror every stored subscription (after a Redis flush); returns how many."""
    count = 0
    for subscription in store.listing(db):
        remember(conn, subscription)
        count += 1
    log.info("mirrored %d subscriptions into Redis", count)
    return count
