"""Create, renew, reauthorize, recreate and delete a user's one Graph subscription.

Every operation on a user's subscription runs under ``calsync:lock:subscription:{user_id}``, so a
renewal, a lifecycle event and a reconnect never race each other into duplicates. Graph is told about
replacements (the old subscription is deleted) and the Redis mirror the webhook reads is kept in step.
Microsoft asks that a reauthorize and a PATCH of one subscription are never sent within 10 minutes of
each other; ``renewed_at`` / ``reauthorized_at`` enforce that.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import contextmanager
from datetime import datetime, timedelta

from service.graph import GraphError, Throttled
from service.store import as_utc, users, utcnow
from service.store import subscriptions as store
from service.subscriptions import cache

log = logging.getLogger(__name__)

LOCK_KEY = "calsync:lock:subscription:{user_id}"
LOCK_SECONDS = 120
LOCK_WAIT_SECONDS = 60
QUIET_WINDOW = timedelta(minutes=10)        # between a reauthorize and a PATCH of the same subscription
FIRST_BACKOFF = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=2)
STATS = "calsync:stats:subscriptions:{name}"
CHANGE_TYPES = "created,updated,deleted"
# The fields the sync stores; rich notifications carry only these (Graph requires $select for them).
RICH_SELECT = (
    "subject,start,end,originalStartTimeZone,originalEndTimeZone,isAllDay,organizer,attendees,isCancelled,"
    "showAs,isOnlineMeeting,type,seriesMasterId,iCalUId,lastModifiedDateTime,changeKey"
)

# Outcomes reported by renew() / reauthorize() (also stats names).
RENEWED, REAUTHORIZED, RECREATED, FAILED, SKIPPED, POSTPONED, GONE = (
    "renewed", "reauthorized", "recreated", "failed", "skipped", "postponed", "gone")


class NotConnected(Exception):  # noqa: N818 - a state, not an error
    """The user is not connected: there is nothing we may subscribe to."""


def resource_for(user_id: str, rich: bool) -> str:
    base = f"users/{user_id}/events"
    return f"{base}?$select={RICH_SELECT}" if rich else base


def subscription_body(settings, user_id: str, client_state: str, now: datetime, keypair=None) -> dict:
    """The POST /subscriptions body; ``keypair`` (rich.KeyPair) makes it a rich subscription."""
    minutes = settings.rich_subscription_minutes if keypair else settings.subscription_minutes
    body = {
        "changeType": CHANGE_TYPES,
        "notificationUrl": settings.notification_url,
        "lifecycleNotificationUrl": settings.lifecycle_url,
        "resource": resource_for(user_id, bool(keypair)),
        "expirationDateTime": _graph_time(now + timedelta(minutes=minutes)),
        "clientState": client_state,
        "latestSupportedTlsVersion": "v1_2",
    }
    if keypair:
        body.update(includeResourceData=True, encryptionCertificate=keypair.certificate_b64,
                    encryptionCertificateId=keypair.certificate_id)
    return body


@contextmanager
def user_lock(rt, user_id: str):
    """Serialise subscription work for one user across workers (raises LockError if it stays busy)."""
    lock = rt.redis.lock(LOCK_KEY.format(user_id=user_id), timeout=LOCK_SECONDS,
                         blocking_timeout=LOCK_WAIT_SECONDS)
    if not lock.acquire():
        from redis.exceptions import LockError

        raise LockError("subscription lock busy")
    try:
        yield
    finally:
        lock.release()


def _graph(rt, user_id: str):
    from service.auth.tokens import graph_for

    return graph_for(rt, user_id)


def create(rt, user_id: str, now: datetime | None = None) -> dict:
    """Create a fresh subscription for a connected user, replacing (never duplicating) any previous one."""
    with user_lock(rt, user_id):
        return _create_locked(rt, user_id, now or utcnow())


def _create_locked(rt, user_id: str, now: datetime) -> dict:
    user = users.get(rt.db, user_id)
    if user is None or (user.get("connection") or {}).get("status") != users.CONNECTED:
        raise NotConnected(user_id)
    graph = _graph(rt, user_id)
    keypair = _keypair(rt.settings)
    client_state = secrets.token_urlsafe(48)  # 64 characters; Graph allows 128
    body = subscription_body(rt.settings, user_id, client_state, now, keypair)
    previous = store.for_user(rt.db, user_id)
    if previous:  # Graph refuses a second subscription on the same resource (409): the old one goes first
        _delete_quietly(graph, previous["_id"])
    try:
        created = _post_subscription(graph, body)
    except GraphError as exc:
        _count(rt, "create_failed")
        if previous:
            store.mark_removed(rt.db, previous["_id"], f"replacement failed: {exc}")
        users.mark_subscription_missing(rt.db, user_id, now)
        raise
    document = {
        "_id": created["id"], "tenant_id": user.get("tenant_id"), "client_state": client_state,
        "resource": body["resource"], "expires_at": _parse_time(created.get("expirationDateTime"), body),
        "status": store.ACTIVE, "rich": bool(keypair), "created_at": now, "last_notification_at": None,
        "renewed_at": None, "reauthorized_at": None, "failures": 0, "last_error": None, "next_attempt_at": None,
    }
    store.replace_for_user(rt.db, user_id, document)
    users.clear_subscription_missing(rt.db, user_id)
    cache.remember(rt.redis, {**document, "user_id": user_id})
    if previous and previous["_id"] != document["_id"]:
        cache.forget(rt.redis, previous["_id"])
    _count(rt, "created")
    log.info("created subscription %s for user %s (expires %s)", document["_id"], user_id, document["expires_at"])
    return {**document, "user_id": user_id}


def recreate(rt, user_id: str, reason: str, now: datetime | None = None) -> dict | None:
    """Replace a gone subscription and ask for a resync (changes in the gap were not notified)."""
    from service.workers.jobs import request_sync

    try:
        document = create(rt, user_id, now)
    except NotConnected:
        log.info("not recreating the subscription of user %s: not connected", user_id)
        return None
    _count(rt, "recreated")
    request_sync(rt, user_id, reason)
    return document


def renew(rt, subscription_id: str, now: datetime | None = None, fresh_token: bool = False) -> str:
    """PATCH a subscription's expiry (which also reauthorizes it); 404 → recreate; failures back off."""
    now = now or utcnow()
    with _held(rt, subscription_id) as document:
        if isinstance(document, str):
            return document
        user_id = document["user_id"]
        reauthorized_at = as_utc(document.get("reauthorized_at"))
        if reauthorized_at and now - reauthorized_at < QUIET_WINDOW:
            store.postpone(rt.db, subscription_id, reauthorized_at + QUIET_WINDOW)
            return POSTPONED
        minutes = rt.settings.rich_subscription_minutes if document.get("rich") else rt.settings.subscription_minutes
        wanted = now + timedelta(minutes=minutes)
        outcome = _call(rt, document, now, "PATCH", f"subscriptions/{subscription_id}", fresh_token=fresh_token,
                        json={"expirationDateTime": _graph_time(wanted)})
        if outcome is not None and not isinstance(outcome, str):
            expires_at = _parse_time(outcome.json().get("expirationDateTime") if outcome.content else None,
                                     {"expirationDateTime": _graph_time(wanted)})
            store.mark_renewed(rt.db, subscription_id, expires_at, now)
            cache.remember(rt.redis, {**document, "expires_at": expires_at})
            _count(rt, RENEWED)
            return RENEWED
    return _after_failure(rt, user_id, outcome)


def reauthorize(rt, subscription_id: str, now: datetime | None = None, fresh_token: bool = False) -> str:
    """POST /subscriptions/{id}/reauthorize (no expiry change); refused within 10 minutes of a PATCH."""
    now = now or utcnow()
    with _held(rt, subscription_id) as document:
        if isinstance(document, str):
            return document
        user_id = document["user_id"]
        renewed_at = as_utc(document.get("renewed_at"))
        if renewed_at and now - renewed_at < QUIET_WINDOW:
            return SKIPPED  # the PATCH already reauthorized it
        outcome = _call(rt, document, now, "POST", f"subscriptions/{subscription_id}/reauthorize",
                        fresh_token=fresh_token)
        if outcome is not None and not isinstance(outcome, str):
            store.mark_reauthorized(rt.db, subscription_id, now)
            _count(rt, REAUTHORIZED)
            return REAUTHORIZED
    return _after_failure(rt, user_id, outcome)


@contextmanager
def _held(rt, subscription_id: str):
    """The stored subscription, re-read under its owner's lock; or GONE / SKIPPED when there is nothing to do."""
    document = store.get(rt.db, subscription_id)
    if document is None or document.get("status") == store.REMOVED:
        yield GONE
        return
    with user_lock(rt, document["user_id"]):
        document = store.get(rt.db, subscription_id)
        if document is None:
            yield GONE
        elif not _connected(rt, document["user_id"]):
            yield SKIPPED
        else:
            yield document


def on_reauthorization_required(rt, subscription_id: str, now: datetime | None = None) -> str:
    """Renew (PATCH reauthorizes too) unless a PATCH or reauthorize happened in the last 10 minutes."""
    now = now or utcnow()
    document = store.get(rt.db, subscription_id)
    if document is None:
        return GONE
    renewed_at = as_utc(document.get("renewed_at"))
    if renewed_at and now - renewed_at < QUIET_WINDOW:
        return SKIPPED
    reauthorized_at = as_utc(document.get("reauthorized_at"))
    if reauthorized_at and now - reauthorized_at < QUIET_WINDOW:
        return reauthorize(rt, subscription_id, now, fresh_token=True)
    return renew(rt, subscription_id, now, fresh_token=True)


def _call(rt, document: dict, now: datetime, method: str, path: str, fresh_token: bool = False, **kwargs):
    """One Graph call for a stored subscription: the response, "gone" on 404, None after recording a failure."""
    from service.auth.tokens import ReconnectRequired, TokenUnavailable

    try:
        graph = _graph(rt, document["user_id"])
        if fresh_token:
            # Graph ties the subscription to the token it is handed: after a reauthorization challenge
            # it must get one with a full lifetime, not a cached one about to expire.
            graph.token(force_refresh=True)
        return graph.request(method, path, **kwargs)
    except ReconnectRequired:
        return "reconnect"
    except GraphError as exc:
        if exc.status == 404:
            mark_removed(rt, document, "Graph 404: subscription no longer exists")
            return "gone"
        wait = exc.retry_after if isinstance(exc, Throttled) and exc.retry_after else None
        _record_failure(rt, document, now, str(exc), wait)
        return None
    except TokenUnavailable as exc:
        _record_failure(rt, document, now, f"token unavailable: {type(exc).__name__}", None)
        return None


def mark_removed(rt, document: dict, reason: str) -> None:
    """Graph no longer holds this subscription: record it, and that its owner waits for a new one."""
    store.mark_removed(rt.db, document["_id"], reason)
    users.mark_subscription_missing(rt.db, document["user_id"])


def _after_failure(rt, user_id: str, outcome) -> str:
    if outcome == "gone":
        return RECREATED if recreate(rt, user_id, "subscription-gone") else GONE
    if outcome == "reconnect":
        return SKIPPED
    return FAILED


def _record_failure(rt, document: dict, now: datetime, error: str, wait: float | None) -> None:
    failures = int(document.get("failures") or 0)
    delay = timedelta(seconds=wait) if wait else min(FIRST_BACKOFF * 2 ** failures, MAX_BACKOFF)
    store.mark_failure(rt.db, document["_id"], error, now + delay)
    _count(rt, FAILED)
    log.warning("subscription %s of user %s: %s (attempt %d, next in %s)",
                document["_id"], document["user_id"], error, failures + 1, delay)


def delete_for_user(rt, user_id: str) -> bool:
    """Delete the user's subscription at Graph (best effort) and here; True if there was one."""
    with user_lock(rt, user_id):
        document = store.for_user(rt.db, user_id)
        if document is None:
            return False
        cache.forget(rt.redis, document["_id"])
        store.delete(rt.db, document["_id"])
        users.clear_subscription_missing(rt.db, user_id)
    from service.auth.tokens import ReconnectRequired, TokenUnavailable

    try:
        _delete_quietly(_graph(rt, user_id), document["_id"])
    except (ReconnectRequired, TokenUnavailable):
        log.info("subscription %s left to expire at Graph: no token for user %s", document["_id"], user_id)
    _count(rt, "deleted")
    return True


def _delete_quietly(graph, subscription_id: str) -> None:
    """DELETE a subscription at Graph; already gone is fine, other failures only mean it expires on its own."""
    try:
        graph.request("DELETE", f"subscriptions/{subscription_id}")
    except GraphError as exc:
        if exc.status != 404:
            log.warning("could not delete subscription %s at Graph (%s); it will expire", subscription_id, exc)


def _post_subscription(graph, body: dict) -> dict:
    """POST /subscriptions; after a 409 (a leftover we lost track of) delete ours on that resource, retry once."""
    try:
        return graph.request("POST", "subscriptions", json=body).json()
    except GraphError as exc:
        if exc.status != 409:
            raise
    listed = graph.get_json("subscriptions").get("value") or []
    for existing in listed:  # GET /subscriptions lists only this app's subscriptions
        if (existing.get("resource") or "").lower() == body["resource"].lower():
            _delete_quietly(graph, existing["id"])
    return graph.request("POST", "subscriptions", json=body).json()


def _connected(rt, user_id: str) -> bool:
    user = users.get(rt.db, user_id)
    return bool(user) and (user.get("connection") or {}).get("status") == users.CONNECTED


def _keypair(settings):
    if not settings.rich_notifications:
        return None
    from service.webhooks.rich import load_keypair

    return load_keypair(settings)


def _count(rt, name: str) -> None:
    rt.redis.incr(STATS.format(name=name))


def _graph_time(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_time(value: object, fallback_body: dict) -> datetime:
    """Graph's expirationDateTime (7 fractional digits, Z); our requested value if it is missing or odd."""
    for candidate in (value, fallback_body.get("expirationDateTime")):
        if isinstance(candidate, str):
            try:
                return as_utc(datetime.fromisoformat(candidate.replace("Z", "+00:00")))
            except ValueError:
                continue
    return utcnow()
