"""Jobs behind the webhook: rich-notification validation/decryption and last-notification bookkeeping.

The receiver answers 202 before any of this runs, as Microsoft advises for rich notifications (the
sender learns nothing about validation). Whatever fails here falls back to a sync of the user.
"""

from __future__ import annotations

import logging
from datetime import datetime

import requests

from service import runtime
from service.store import events, users, utcnow
from service.store import subscriptions as subscription_store
from service.webhooks import rich
from service.webhooks.receiver import stat_key
from service.workers.jobs import request_sync

log = logging.getLogger(__name__)

DIRECT_TYPES = frozenset({"singleInstance", "occurrence", "exception"})


def apply_rich(user_id: str, items: list[dict], tokens: list[str]) -> str:
    """Validate the batch's tokens, decrypt each event and store it; fall back to a sync on any doubt."""
    rt = runtime.current()
    try:
        keypair = rich.load_keypair(rt.settings)
        jwks = rich.fetch_jwks(rt, rich.token_kids(tokens))
        tenants = {item["tenant_id"] for item in items if item.get("tenant_id")}
        rich.validate_tokens(tokens, tenants, jwks, rt.settings.client_id, rt.settings.authority_host)
    except rich.RichError as exc:
        return _fallback(rt, user_id, exc.reason, len(items))
    except (OSError, ValueError, requests.RequestException) as exc:  # no key file, JWKS unreachable or garbled
        return _fallback(rt, user_id, f"unavailable_{type(exc).__name__}", len(items))
    changes, doubtful = [], 0
    for item in items:
        change = _change_for(rt, item, keypair)
        if change is None:
            doubtful += 1
        else:
            changes.append(change)
    if changes:
        events.apply_changes(rt.db, user_id, changes, utcnow())  # it ignores versions older than the stored one
        rt.redis.incrby(stat_key("rich:applied"), len(changes))
    if doubtful:
        return _fallback(rt, user_id, "item", doubtful)
    return "applied"


def _change_for(rt, item: dict, keypair: rich.KeyPair) -> dict | None:
    """The delta-shaped change for one notification, or None when only a sync can tell."""
    if item.get("change_type") == "deleted":
        resource_id = item.get("resource_id")
        return {"id": resource_id, "@removed": {"reason": "deleted"}} if resource_id else None
    try:
        event = rich.decrypt(item.get("encrypted"), keypair)
    except rich.RichError as exc:
        rt.redis.incr(stat_key(f"dropped:rich_{exc.reason}"))
        log.warning("rich notification for subscription %s not usable: %s", item.get("subscription_id"), exc.reason)
        return None
    if not isinstance(event.get("id"), str) or event.get("type", "singleInstance") not in DIRECT_TYPES:
        return None  # a series master changes many occurrences: the delta sync expands them
    return event


def _fallback(rt, user_id: str, reason: str, count: int) -> str:
    rt.redis.incrby(stat_key(f"rich:fallback:{reason}"), count)
    log.warning("rich notifications for user %s fall back to a sync: %s", user_id, reason)
    request_sync(rt, user_id, "rich-fallback")
    return f"fallback:{reason}"


def record_notification(user_id: str, subscription_id: str, at_iso: str) -> None:
    """Stamp ``users.sync.last_notification_at`` and the subscription's (the receiver throttles this)."""
    rt = runtime.current()
    at = datetime.fromisoformat(at_iso)
    users.update_fields(rt.db, user_id, {"sync.last_notification_at": at})
    subscription_store.touch_notification(rt.db, subscription_id, at)
