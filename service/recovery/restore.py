"""``calsync recover``: bring a MongoDB restored from an older backup back in line with Graph and Redis.

Run after ``calsync init-db``. What the backup lacks and where it comes from:

- subscriptions created since (Graph keeps notifying them; the webhook answers 202 and logs an unknown-
  subscription drop meanwhile): each connected user's subscriptions are listed at Graph (``GET /subscriptions``
  with the user's delegated token answers "subscriptions created by this app for the signed-in user only").
  The stored one is kept when Graph still has it (its expiry taken from Graph); otherwise one whose owner and
  clientState digest the Redis mirror still holds is adopted; every other one is deleted at Graph, and a user
  left without one gets a new subscription;
- every change since the backup: each connected user's delta cursors are forgotten and a full sync is asked for
  (an old cursor would do, but a full round also removes what the older store holds and Graph does not);
- digests and prep mails sent since: recorded again from Redis's witness keys (``recovery.witness``), so the
  tick's jobs find them handled;
- outbound sequences: moved on by a wide gap, so no number handed out after the backup is handed out again.

Users who connected after the backup are not in it at all (no record, no token): they reconnect; their
subscriptions expire at Graph within the lifetime asked for, their notifications dropped as unknown meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from pymongo.database import Database
from redis import Redis

from service.config import Settings
from service.graph import GraphClient, GraphError
from service.identity.tokens import ReconnectRequired, TokenUnavailable
from service.recovery import witness
from service.store import calendars, users
from service.store import preps as preps_store
from service.store import recovery as store
from service.store import subscriptions as subscriptions_store
from service.store.records import Subscription
from service.subscriptions import mirror
from service.subscriptions.lifecycle import Subscriptions, parse_time
from service.sync import sweeps

log = logging.getLogger(__name__)

REASON = "restored-from-backup"
SEQUENCE_GAP = 1_000_000
MAX_PAGES = 20


def recover(db: Database, redis: Redis, settings: Settings, graph_for: Callable[[str], GraphClient],
            subscriptions: Subscriptions, now: datetime, sequence_gap: int = SEQUENCE_GAP) -> dict:
    """Everything above, for every connected user; returns counts by what happened. Safe to run again."""
    counts: Counter = Counter()
    counts["digests_restored"] = sum(store.restore_digest_sent(db, user_id, day, at)
                                     for user_id, day, at in witness.digests(redis))
    counts["preps_restored"] = sum(store.restore_prep_sent(db, record_id, user_id, meeting, start, at, preps_store.KEEP)
                                   for record_id, user_id, meeting, start, at in witness.preps(redis))
    connected = users.connected_ids(db)
    for user_id in connected:
        outcome = reconcile_subscription(db, redis, settings, graph_for, subscriptions, user_id, now)
        counts[f"subscription_{outcome}"] += 1
        calendars.clear_cursor(db, user_id)
    counts["sequences_advanced"] = store.advance_sequences(db, sequence_gap)
    counts["mirrored"] = mirror.rebuild(redis, db)
    counts["users"] = len(connected)
    counts["syncs_requested"] = sweeps.request_in_batches(redis, connected, REASON)
    report = dict(sorted(counts.items()))
    store.record_restore(db, report, now)
    log.warning("recovered from a restored MongoDB: %s", report)
    return report


def reconcile_subscription(db: Database, redis: Redis, settings: Settings, graph_for: Callable[[str], GraphClient],
                           subscriptions: Subscriptions, user_id: str, now: datetime) -> str:
    """Make the user's stored subscription the one Graph has: kept, adopted, created, or unreachable."""
    try:
        graph = graph_for(user_id)
        listed = [s for s in _listed(graph) if s.get("notificationUrl") == settings.notification_url]
    except (ReconnectRequired, TokenUnavailable, GraphError) as exc:
        log.warning("subscriptions of user %s not checked at Graph: %s", user_id, type(exc).__name__)
        return "unreachable"
    known = subscriptions_store.for_user(db, user_id)
    kept = next((s for s in listed if known is not None and s["id"] == known.id), None)
    outcome = "kept" if kept else None
    if kept is not None:
        subscriptions_store.mark_renewed(db, known.id, parse_time(kept.get("expirationDateTime"), ""), now)
    for other in listed:
        if kept is not None and other["id"] == kept["id"]:
            continue
        digest = _known_digest(redis, other, user_id)
        if kept is None and digest is not None:
            _adopt(db, redis, other, digest, user_id, now)
            kept, outcome = other, "adopted"
            continue
        _delete(graph, other["id"])
    if kept is None:
        return "created" if subscriptions.recreate(user_id, REASON) else "missing"
    return outcome


def _listed(graph: GraphClient) -> list[dict]:
    found, page = [], graph.get_json("subscriptions")
    for _ in range(MAX_PAGES):
        found += page.get("value") or []
        if not page.get("@odata.nextLink"):
            break
        page = graph.get_json(page["@odata.nextLink"])
    return found


def _known_digest(redis: Redis, listed: dict, user_id: str) -> bytes | None:
    """The clientState digest of a subscription we cannot find in MongoDB: from the Redis mirror (which outlives
    a MongoDB restore), else from the clientState Graph returned, if it returned one."""
    user, digest = redis.hmget(mirror.key(listed["id"]), "u", "c")
    if user is not None and user.decode() == user_id and digest:
        return digest
    if listed.get("clientState"):
        return hashlib.sha256(listed["clientState"].encode()).digest()
    return None


def _adopt(db: Database, redis: Redis, listed: dict, digest: bytes, user_id: str, now: datetime) -> None:
    """Store a subscription Graph has and this store forgot (created after the backup), as its own record."""
    user = users.get(db, user_id)
    subscription = Subscription(
        id=listed["id"], user_id=user_id, tenant_id=user.tenant_id if user else None,
        resource=listed.get("resource") or "", rich=bool(listed.get("includeResourceData")),
        expires_at=parse_time(listed.get("expirationDateTime"), ""), created_at=now, immutable_ids=True,
        client_state_sha256=digest.hex())
    subscriptions_store.replace_for_user(db, subscription)
    users.clear_subscription_missing(db, user_id)
    mirror.remember(redis, subscription)
    log.info("adopted subscription %s of user %s", subscription.id, user_id)


def _delete(graph: GraphClient, subscription_id: str) -> None:
    try:
        graph.request("DELETE", f"subscriptions/{subscription_id}")
        log.info("deleted subscription %s at Graph: not ours any more", subscription_id)
    except GraphError as exc:
        if exc.status != 404:
            log.warning("could not delete subscription %s at Graph (%s); it will expire", subscription_id, exc)
