"""Graph subscriptions: one document per user (unique ``user_id``), ``_id`` = Graph's subscription id.

The webhook's hot path reads the owner and clientState from a Redis mirror (``service.subscriptions.cache``)
and falls back to :func:`get` here; every write below is made by subscription jobs, never per notification.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from service.store import activity, utcnow
from service.store.records import LIVE_SUBSCRIPTION, Subscription, SubscriptionStatus

ACTIVE = SubscriptionStatus.ACTIVE.value
FAILING = SubscriptionStatus.FAILING.value
REMOVED = SubscriptionStatus.REMOVED.value
LIVE = [str(status) for status in LIVE_SUBSCRIPTION]

BY_USER = "user_id"
# Both end in _id, so a page by (expires_at, _id) is read in index order: no sort, whatever the count.
BY_STATUS_AND_EXPIRY = "status_expires_id"       # the renewal sweep; operators' listing of one status
BY_EXPIRY = "expires_at_id"                      # operators' listing, soonest expiry first
BY_RECREATE = "recreate_reason"                  # the few marked for a replacement without a gap (sparse)
IMMUTABLE_IDS = "immutable-ids"

INDEXES = {
    "subscriptions": [
        IndexModel([("user_id", ASCENDING)], unique=True, name=BY_USER),
        IndexModel([("status", ASCENDING), ("expires_at", ASCENDING), ("_id", ASCENDING)], name=BY_STATUS_AND_EXPIRY),
        IndexModel([("expires_at", ASCENDING), ("_id", ASCENDING)], name=BY_EXPIRY),
        IndexModel([("recreate_reason", ASCENDING)], name=BY_RECREATE, sparse=True),
    ],
}
RETIRED_INDEXES = {"subscriptions": ["status_expires", "expires_at"]}   # the same, without _id


def _record(doc: dict | None) -> Subscription | None:
    return Subscription.from_doc(doc) if doc else None


def document(subscription: Subscription) -> dict:
    """The stored shape of a subscription record."""
    doc = asdict(subscription)
    doc["_id"] = doc.pop("id")
    doc["status"] = str(subscription.status)
    del doc["client_state"]   # a secret shared with Graph: at rest only its digest, which is all the webhook needs
    doc["client_state_sha256"] = subscription.client_state_digest.hex()
    if doc["recreate_reason"] is None:
        del doc["recreate_reason"]   # sparse: only marked subscriptions are in its index
    return doc


def mark_for_immutable_ids(db: Database) -> int:
    """Live subscriptions created before calsync asked for immutable ids are to be replaced (the header works
    only when a subscription is created); returns how many were marked. No Graph call: a job does that."""
    return db.subscriptions.update_many(
        {"immutable_ids": {"$ne": True}, "status": {"$in": LIVE}, "recreate_reason": {"$exists": False}},
        {"$set": {"recreate_reason": IMMUTABLE_IDS}}).modified_count


def marked_for_recreation(db: Database, now: datetime, limit: int) -> list[Subscription]:
    """Subscriptions marked for a replacement without a gap, not already scheduled (the sparse index)."""
    found = db.subscriptions.find({"recreate_reason": {"$exists": True}}).hint(BY_RECREATE).limit(limit)
    return [s for s in map(Subscription.from_doc, found)
            if s.live and (s.next_attempt_at is None or s.next_attempt_at <= now)]


def hash_client_states(db: Database) -> int:
    """Subscriptions stored with their clientState in clear keep only its digest; returns how many changed."""
    changed = 0
    for doc in db.subscriptions.find({"client_state": {"$exists": True}}):
        digest = Subscription.from_doc(doc).client_state_digest.hex()
        result = db.subscriptions.update_one({"_id": doc["_id"], "client_state": doc["client_state"]},
                                             {"$set": {"client_state_sha256": digest}, "$unset": {"client_state": ""}})
        changed += result.modified_count
    return changed


def get(db: Database, subscription_id: str) -> Subscription | None:
    return _record(db.subscriptions.find_one({"_id": subscription_id}))


def for_user(db: Database, user_id: str) -> Subscription | None:
    return _record(db.subscriptions.find_one({"user_id": user_id}))


def replace_for_user(db: Database, subscription: Subscription) -> Subscription | None:
    """Store ``subscription`` as its user's one subscription; returns the one it replaced (or None)."""
    previous = db.subscriptions.find_one_and_delete({"user_id": subscription.user_id})
    db.subscriptions.insert_one(document(subscription))
    return _record(previous)


def delete(db: Database, subscription_id: str) -> None:
    db.subscriptions.delete_one({"_id": subscription_id})


def mark_renewed(db: Database, subscription_id: str, expires_at: datetime, now: datetime | None = None) -> None:
    now = now or utcnow()
    db.subscriptions.update_one(
        {"_id": subscription_id},
        {"$set": {"expires_at": expires_at, "renewed_at": now, "status": ACTIVE, "failures": 0,
                  "last_error": None, "next_attempt_at": None}},
    )


def mark_reauthorized(db: Database, subscription_id: str, now: datetime | None = None) -> None:
    db.subscriptions.update_one(
        {"_id": subscription_id},
        {"$set": {"reauthorized_at": now or utcnow(), "status": ACTIVE, "last_error": None}},
    )


def mark_failure(db: Database, subscription_id: str, error: str, next_attempt_at: datetime) -> None:
    """Record a failed renew/reauthorize: status failing, a back-off time, and the error for operators."""
    found = db.subscriptions.find_one_and_update(
        {"_id": subscription_id},
        {"$set": {"status": FAILING, "last_error": error[:300], "next_attempt_at": next_attempt_at},
         "$inc": {"failures": 1}}, projection={"user_id": 1},
    )
    if found and found.get("user_id"):
        activity.note(db, found["user_id"], "error", utcnow(), f"subscription failing: {error}", error=error)


def mark_removed(db: Database, subscription_id: str, reason: str) -> None:
    found = db.subscriptions.find_one_and_update({"_id": subscription_id},
                                                 {"$set": {"status": REMOVED, "last_error": reason[:300]}},
                                                 projection={"user_id": 1})
    if found and found.get("user_id"):
        activity.note(db, found["user_id"], "error", utcnow(), f"subscription removed: {reason}", error=reason)


def postpone(db: Database, subscription_id: str, until: datetime) -> None:
    """Claim a subscription for a scheduled attempt so the next sweep does not pick it up again."""
    db.subscriptions.update_one({"_id": subscription_id}, {"$set": {"next_attempt_at": until}})


def due_for_renewal(db: Database, before: datetime, now: datetime, limit: int) -> list[Subscription]:
    """Live subscriptions expiring before ``before`` that are not backing off or already scheduled."""
    found = db.subscriptions.find(
        {
            "status": {"$in": LIVE},
            "expires_at": {"$lt": before},
            "$or": [{"next_attempt_at": None}, {"next_attempt_at": {"$lte": now}}],
        },
        sort=[("expires_at", ASCENDING)],
        limit=limit,
    ).hint(BY_STATUS_AND_EXPIRY)
    return [Subscription.from_doc(doc) for doc in found]


def touch_notification(db: Database, subscription_id: str, at: datetime) -> None:
    """Move last_notification_at forward only (late jobs never move it back).

    A conditional $set rather than $max: the field starts as null, and mongomock's $max cannot compare a
    datetime with null; ``$not $gte`` matches null and earlier times in one predicate.
    """
    db.subscriptions.update_one(
        {"_id": subscription_id, "last_notification_at": {"$not": {"$gte": at}}},
        {"$set": {"last_notification_at": at}},
    )


def listing(db: Database, status: str | None = None) -> list[Subscription]:
    """Every subscription (optionally of one status), soonest expiry first: for the CLI."""
    if status:
        found = db.subscriptions.find({"status": status}, sort=[("expires_at", ASCENDING)]).hint(BY_STATUS_AND_EXPIRY)
    else:
        found = db.subscriptions.find({}, sort=[("expires_at", ASCENDING)]).hint(BY_EXPIRY)
    return [Subscription.from_doc(doc) for doc in found]


def get_many(db: Database, subscription_ids: list[str]) -> list[Subscription]:
    return [Subscription.from_doc(doc) for doc in db.subscriptions.find({"_id": {"$in": subscription_ids}})]


def users_with_live_subscription(db: Database) -> set[str]:
    """Owners of active or failing subscriptions (a one-time migration; sweeps use the user marker)."""
    return set(db.subscriptions.distinct("user_id", {"status": {"$in": LIVE}}))
