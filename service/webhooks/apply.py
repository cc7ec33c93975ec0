"""Work behind the webhook: rich-notification validation/decryption and last-notification bookkeeping.

The receiver answers 202 before any of this runs, as Microsoft advises for rich notifications (the
sender learns nothing about validation). Whatever fails here falls back to a sync of the user.

A notification does not say which of the user's calendars an event is in, so a rich one updates or deletes
only events already stored (their calendar is known); a new event is left to the delta sync, which knows.
The job holds the user's sync lock while it writes, so it never races a sync or a deletion of the user's
data; when a sync holds it, that sync (asked to run again) picks the change up instead.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pymongo.database import Database
from redis import Redis

from service import locks, outbox
from service.config import Settings
from service.identity.jwks import SigningKeys
from service.store import events, users, utcnow
from service.store import subscriptions as subscription_store
from service.subscriptions.certificate import KeyPair, load_keypair
from service.sync.requests import request_sync
from service.sync.runner import LOCK_KEY
from service.webhooks import rich
from service.webhooks.receiver import stat_key

log = logging.getLogger(__name__)

DIRECT_TYPES = frozenset({"singleInstance", "occurrence", "exception"})
LOCK_SECONDS = 30
LOCK_WAIT_SECONDS = 2.0     # a sync holding the lock will see the change itself


def apply_rich(db: Database, redis: Redis, settings: Settings, keys: SigningKeys, user_id: str,
               items: list[dict], tokens: list[str]) -> str:
    """Validate the batch's tokens (signed by ``keys``), decrypt each event and store it; fall back to a sync on
    any doubt."""
    try:
        keypair = load_keypair(settings)
        tenants = {item["tenant_id"] for item in items if item.get("tenant_id")}
        rich.validate_tokens(tokens, tenants, keys, settings.client_id, settings.authority_host)
    except rich.RichError as exc:  # including signing keys that could not be fetched ("unavailable_...")
        return _fallback(redis, user_id, exc.reason, len(items))
    except (OSError, ValueError) as exc:  # no certificate or key file, or a mismatched pair
        return _fallback(redis, user_id, f"unavailable_{type(exc).__name__}", len(items))
    try:
        with locks.held(redis, LOCK_KEY.format(user_id=user_id), LOCK_SECONDS, wait=LOCK_WAIT_SECONDS):
            return _apply(db, redis, user_id, items, keypair)
    except locks.LockBusy:
        return _fallback(redis, user_id, "sync_running", len(items))


def _apply(db: Database, redis: Redis, user_id: str, items: list[dict], keypair: KeyPair) -> str:
    user = users.get(db, user_id)
    if user is None or not user.connected:
        return "skipped"     # disconnected or deleted meanwhile: nothing may be written for them
    changes, doubtful = [], 0
    same_ids = _same_id_format(db, user.immutable_ids, items)
    for item in items:
        if item.get("subscription_id") not in same_ids:
            doubtful += 1    # its ids are not the stored ones' format (a subscription being switched): sync
            continue
        change = _change_for(redis, item, keypair)
        if change is None:
            doubtful += 1
        else:
            changes.append(change)
    known = events.calendars_of(db, user_id, [c["id"] for c in changes if "@removed" not in c])
    by_calendar: dict[str | None, list[dict]] = {}
    for change in changes:
        if "@removed" in change or change["id"] in known:
            by_calendar.setdefault(known.get(change["id"]), []).append(change)
        else:
            doubtful += 1    # new to us: only the delta sync knows its calendar
    written = events.MeetingChanges()
    with events.one_version_bump(db):   # the weekly summaries: one write for the batch
        for calendar_id, batch in by_calendar.items():  # apply_changes ignores versions older than the stored one
            written.add(events.apply_changes(db, user_id, batch, utcnow(), calendar_id).changes)
    outbox.meetings_changed(db, redis, user_id, written)   # one per batch, as a sync round
    applied = sum(len(batch) for batch in by_calendar.values())
    if applied:
        redis.incrby(stat_key("rich:applied"), applied)
    if doubtful:
        return _fallback(redis, user_id, "item", doubtful)
    return "applied"


def _same_id_format(db: Database, immutable: bool, items: list[dict]) -> set[str]:
    """The subscriptions among the items whose notifications carry ids in the format the user's events are
    stored with (immutable or regular: service.sync.ids); a subscription gone from the store counts as neither."""
    wanted = sorted({i["subscription_id"] for i in items if isinstance(i.get("subscription_id"), str)})
    return {s.id for s in subscription_store.get_many(db, wanted) if s.immutable_ids == immutable}


def _change_for(redis: Redis, item: dict, keypair: KeyPair) -> dict | None:
    """The delta-shaped change for one notification, or None when only a sync can tell."""
    if item.get("change_type") == "deleted":
        resource_id = item.get("resource_id")
        return {"id": resource_id, "@removed": {"reason": "deleted"}} if resource_id else None
    try:
        event = rich.decrypt(item.get("encrypted"), keypair)
    except rich.RichError as exc:
        redis.incr(stat_key(f"dropped:rich_{exc.reason}"))
        log.warning("rich notification for subscription %s not usable: %s", item.get("subscription_id"), exc.reason)
        return None
    if not isinstance(event.get("id"), str) or event.get("type", "singleInstance") not in DIRECT_TYPES:
        return None  # a series master changes many occurrences: the delta sync expands them
    return event


def _fallback(redis: Redis, user_id: str, reason: str, count: int) -> str:
    redis.incrby(stat_key(f"rich:fallback:{reason}"), count)
    log.warning("rich notifications for user %s fall back to a sync: %s", user_id, reason)
    request_sync(redis, user_id, "rich-fallback")
    return f"fallback:{reason}"


def record_notification(db: Database, user_id: str, subscription_id: str, at: datetime) -> None:
    """Stamp the user's and the subscription's last notification (the receiver throttles this)."""
    users.touch_notification(db, user_id, at)
    subscription_store.touch_notification(db, subscription_id, at)
