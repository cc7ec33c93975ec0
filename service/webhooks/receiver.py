"""What the webhook does with a parsed collection: look up, verify, queue. Redis only on this path.

Change and lifecycle notifications alike take one run of the rule's script library
(``service.sync.rule``, entry ``notifications``): per item it looks the subscription up in the mirror,
compares the clientState digests, and for verified changes marks the owner dirty, claims the pending guard
and, only for owners with no sync pending, appends a request to the dispatcher's stream
(``service.sync.dispatch``); it also throttles the "last notification" stamp and counts what was kept and
dropped. For a change-notification POST that is the whole request: one Redis round trip, and when it
returns the request is in Redis and the route answers 202; no RQ job is built on the request path (the
dispatcher does that). A subscription missing from the mirror falls back to MongoDB (read only, refilling
the mirror), then a second run of the script. Rich items and lifecycle events (rare) are queued as jobs
afterwards; ``missed`` asks for a sync through ``request_syncs``, the same rule. Nothing here calls Graph
or writes MongoDB. Any RedisError propagates so the route answers 5xx and Graph redelivers.

clientState: both routes compare SHA-256 digests inside the script (``rule.lua``'s ``verify``): the
received clientState is hashed here, the mirror holds only the digest of ours, and a missing clientState
never matches. The comparison need not be constant-time: timing could at most reveal how many leading bytes
of the attacker's own digest match ours, and steering a digest byte by byte means finding SHA-256 inputs
with a chosen prefix (2^8k work for k bytes), which teaches nothing about the clientState itself (64 random
URL-safe characters, ``subscriptions.lifecycle``). Lua 5.1 also interns its strings, so ``~=`` compares
two pointers.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from pymongo.database import Database
from redis import Redis

from service import queues
from service.store import utcnow
from service.subscriptions import mirror
from service.subscriptions.lifecycle import LIFECYCLE_PENDING, LIFECYCLE_PENDING_TTL
from service.subscriptions.mirror import SubscriptionRef, client_state_digest
from service.sync import rule
from service.sync.requests import request_syncs
from service.webhooks.notifications import (
    CLIENT_STATE,
    MALFORMED_ITEM,
    UNKNOWN_SUBSCRIPTION,
    Collection,
    Notification,
    Verdict,
)

log = logging.getLogger(__name__)

STATS = "calsync:stats:webhook:{name}"
SEEN_KEY = "calsync:webhook:seen:{user_id}"
SEEN_EVERY = 60


def stat_key(name: str) -> str:
    return STATS.format(name=name)


# The keys the script needs besides the rule's own: the mirror, the "seen" stamp, the counters.
_KEYS = (mirror.key(""), SEEN_KEY.format(user_id=""), SEEN_EVERY)
_COUNTERS = {route: (stat_key(accepted), stat_key(f"dropped:{UNKNOWN_SUBSCRIPTION}"),
                     stat_key(f"dropped:{CLIENT_STATE}"), stat_key(f"dropped:{MALFORMED_ITEM}"))
             for route, accepted in (("changes", "accepted"), ("lifecycle", "lifecycle"))}


def receive_changes(redis: Redis, db: Database, collection: Collection) -> Verdict:
    """Verify a change-notification collection and queue the work in one Redis round trip (a second one
    and a MongoDB read only for subscriptions missing from the mirror); returns what was kept and dropped."""
    verdict, rich = _receive(redis, db, collection, "changes")
    for user_id, rich_items in rich.items():
        queues.enqueue(redis, queues.SYNC, queues.APPLY_RICH, user_id, rich_items, list(collection.validation_tokens))
    return verdict


def receive_lifecycle(redis: Redis, db: Database, collection: Collection) -> Verdict:
    """Verify lifecycle notifications (the same script as changes); ``missed`` asks for a sync, the others
    queue one job per subscription and event."""
    verdict, _ = _receive(redis, db, collection, "lifecycle")
    missed = [ref.user_id for item, ref in verdict.accepted if item.lifecycle_event == "missed"]
    if missed:
        request_syncs(redis, missed, "missed")
    events = list(dict.fromkeys((ref.subscription_id, item.lifecycle_event) for item, ref in verdict.accepted
                                if item.lifecycle_event != "missed"))
    if events:
        pipe = redis.pipeline(transaction=False)
        for subscription_id, event in events:
            guard = LIFECYCLE_PENDING.format(subscription_id=subscription_id, event=event)
            pipe.set(guard, 1, nx=True, ex=LIFECYCLE_PENDING_TTL)
        for (subscription_id, event), fresh in zip(events, pipe.execute(), strict=True):
            if fresh:
                queues.enqueue(redis, queues.SUBSCRIPTIONS, queues.HANDLE_LIFECYCLE, subscription_id, event)
    return verdict


def _receive(redis: Redis, db: Database, collection: Collection, route: str) -> tuple[Verdict, dict]:
    """Run the script over the collection (again for mirror misses, after refilling the mirror); the verdict
    and the rich items by owner."""
    items = collection.items
    digests = [client_state_digest(item.client_state) if item.client_state is not None else b"" for item in items]
    codes = _run(redis, items, digests, collection, route, malformed=collection.malformed, final=False)
    missed = [n for n, (code, _) in enumerate(codes) if code == "m"]
    if missed:
        mirror.lookup(redis, db, [items[n].subscription_id for n in missed])   # refills the mirror from MongoDB
        again = _run(redis, tuple(items[n] for n in missed), [digests[n] for n in missed], collection, route,
                     malformed=0, final=True)
        for n, result in zip(missed, again, strict=True):
            codes[n] = result
    verdict = Verdict()
    rich = defaultdict(list)
    for item, digest, (code, user_id) in zip(items, digests, codes, strict=True):
        if code == "x":
            verdict.dropped[UNKNOWN_SUBSCRIPTION] += 1
        elif code == "c":
            verdict.dropped[CLIENT_STATE] += 1
        else:
            verdict.accepted.append((item, SubscriptionRef(item.subscription_id, user_id, digest, code in ("r", "p"))))
            if code == "r":
                rich[user_id].append(_rich_item(item))
    if collection.malformed:
        verdict.dropped[MALFORMED_ITEM] += collection.malformed
    if verdict.dropped:
        log.warning("dropped notifications: %s", ", ".join(f"{r}={c}" for r, c in sorted(verdict.dropped.items())))
    return verdict, rich


def _run(redis: Redis, items: tuple[Notification, ...], digests: list[bytes], collection: Collection, route: str, *,
         malformed: int, final: bool) -> list[tuple[str, str]]:
    """Run the rule's ``notifications`` entry over ``items`` (``digests``: SHA-256 of each clientState, b"" when
    absent): per item (code, owner); codes a/p accepted (plain path), r accepted (rich path), v accepted
    (lifecycle), x unknown subscription, c wrong clientState, m not in the mirror (only when not ``final``)."""
    args: list = [utcnow().isoformat(), "notification", "1" if final else "0", malformed, *_KEYS, *_COUNTERS[route]]
    lifecycle = route == "lifecycle"
    rich_possible = bool(collection.validation_tokens)
    for item, digest in zip(items, digests, strict=True):
        if lifecycle:
            action = "v"
        else:
            action = "1" if rich_possible and (item.encrypted is not None or item.change_type == "deleted") else "0"
        args += [item.subscription_id, digest, action]
    reply = rule.call(redis, "notifications", *args)
    return [(_text(reply[k]), _text(reply[k + 1])) for k in range(0, len(reply), 2)]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _rich_item(item: Notification) -> dict:
    """The primitives the rich job needs (the encrypted blob stays encrypted in Redis)."""
    return {"subscription_id": item.subscription_id, "tenant_id": item.tenant_id,
            "change_type": item.change_type, "resource_id": item.resource_id,
            "encrypted": dict(item.encrypted) if item.encrypted else None}
