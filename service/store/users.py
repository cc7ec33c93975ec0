"""Users: one document per connected Microsoft account, keyed by the Graph user id (oid)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database

from service.store import utcnow

CONNECTED = "connected"
NEEDS_RECONNECT = "needs_reconnect"
DISCONNECTED = "disconnected"

BY_STATUS_AND_LAST_SYNC = "status_last_sync"
MISSING_SUBSCRIPTION = "subscription_missing_since"

INDEXES = {
    "users": [
        IndexModel([("email", ASCENDING)], name="email"),
        # Connected users by last sync (the reconcile sweep); its prefix serves the status lookups.
        IndexModel([("connection.status", ASCENDING), ("sync.last_sync_at", ASCENDING)],
                   name=BY_STATUS_AND_LAST_SYNC),
        IndexModel([("digest.next_at", ASCENDING)], name="digest_next_at"),     # the digest tick
        # Only users waiting for a subscription carry the field: the repair sweep reads just those.
        IndexModel([("subscription_missing_since", ASCENDING)], name=MISSING_SUBSCRIPTION, sparse=True),
    ],
}
RETIRED_INDEXES = {"users": ["connection_status"]}


def get(db: Database, user_id: str) -> dict | None:
    return db.users.find_one({"_id": user_id})


def by_email(db: Database, email: str) -> dict | None:
    return db.users.find_one({"email": email.strip().lower()})


def find(db: Database, email_or_id: str) -> dict | None:
    """Look a user up by Graph id or by email (the API accepts either)."""
    return get(db, email_or_id) or by_email(db, email_or_id)


def upsert_from_graph(
    db: Database, me: dict, tenant_id: str, home_account_id: str, now: datetime | None = None
) -> dict:
    """Create or refresh a user from Graph's /me; (re)connecting keeps identity, history and preferences."""
    now = now or utcnow()
    email = (me.get("mail") or me.get("userPrincipalName") or "").strip().lower()
    return db.users.find_one_and_update(
        {"_id": me["id"]},
        {
            "$set": {
                "tenant_id": tenant_id,
                "email": email,
                "display_name": me.get("displayName") or email,
                # Dotted fields: reconnecting keeps connection.reconnect_mail_sent_at (one mail per 24 h).
                "connection.status": CONNECTED,
                "connection.reason": None,
                "connection.since": now,
                "connection.home_account_id": home_account_id,
                "updated_at": now,
            },
            "$setOnInsert": {
                "created_at": now,
                "time_zone": None,
                "digest": {"enabled": True, "time": None, "send_empty": False},
                "sync": {"error_count": 0},
            },
        },
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )


def set_connection_status(
    db: Database, user_id: str, status: str, reason: str | None = None, now: datetime | None = None
) -> dict | None:
    """Record a connection state change; returns the document as it was before (None if unknown)."""
    now = now or utcnow()
    return db.users.find_one_and_update(
        {"_id": user_id},
        {"$set": {"connection.status": status, "connection.reason": reason, "connection.since": now,
                  "updated_at": now}},
    )


def connected_ids(db: Database) -> list[str]:
    """Ids of every connected user (migrations only: sweeps read indexed subsets)."""
    return [u["_id"] for u in db.users.find({"connection.status": CONNECTED}, {"_id": 1}).hint(BY_STATUS_AND_LAST_SYNC)]


def update_fields(db: Database, user_id: str, fields: dict) -> None:
    """Set dotted fields on one user (preferences, sync observability)."""
    db.users.update_one({"_id": user_id}, {"$set": {**fields, "updated_at": utcnow()}})


def mark_needs_reconnect(db: Database, user_id: str, reason: str, now: datetime | None = None) -> bool:
    """Move a connected user to needs_reconnect; True only for the call that made the change."""
    now = now or utcnow()
    result = db.users.update_one(
        {"_id": user_id, "connection.status": CONNECTED},
        {"$set": {"connection.status": NEEDS_RECONNECT, "connection.reason": reason, "connection.since": now,
                  "updated_at": now}},
    )
    return result.modified_count == 1


def claim_reconnect_mail(db: Database, user_id: str, interval: timedelta, now: datetime | None = None) -> dict | None:
    """Atomically take the right to send a reconnect mail (none sent within ``interval``).

    Returns the user as it was before the claim, or None when a mail went out too recently or the user no
    longer needs to reconnect.
    """
    now = now or utcnow()
    return db.users.find_one_and_update(
        {
            "_id": user_id,
            "connection.status": NEEDS_RECONNECT,
            "$or": [
                {"connection.reconnect_mail_sent_at": None},
                {"connection.reconnect_mail_sent_at": {"$lte": now - interval}},
            ],
        },
        {"$set": {"connection.reconnect_mail_sent_at": now}},
    )


def release_reconnect_mail(db: Database, user_id: str, claimed_at: datetime, previous: datetime | None) -> None:
    """Undo a claim whose mail could not be sent, so a retry may send it."""
    db.users.update_one(
        {"_id": user_id, "connection.reconnect_mail_sent_at": claimed_at},
        {"$set": {"connection.reconnect_mail_sent_at": previous}},
    )


def set_time_zone_if_unset(db: Database, user_id: str, time_zone: str) -> bool:
    """Take the browser's IANA zone as the user's preference unless one is already recorded."""
    result = db.users.update_one(
        {"_id": user_id, "$or": [{"time_zone": None}, {"time_zone": {"$exists": False}}]},
        {"$set": {"time_zone": time_zone, "time_zone_source": "browser", "updated_at": utcnow()}},
    )
    return result.modified_count == 1


def purge_calendar_data(db: Database, user_id: str) -> dict[str, int]:
    """Delete a disconnected user's stored events and sync cursor (the user document itself stays)."""
    return {
        "events": db.events.delete_many({"user_id": user_id}).deleted_count,
        "sync_state": db.sync_state.delete_many({"_id": user_id}).deleted_count,
    }


def connection_statuses(db: Database, user_ids: Iterable[str]) -> dict[str, str | None]:
    """user_id → connection status, for a batch of users."""
    found = db.users.find({"_id": {"$in": list(set(user_ids))}}, {"connection.status": 1})
    return {u["_id"]: (u.get("connection") or {}).get("status") for u in found}


def missing_subscriptions(db: Database) -> list[dict]:
    """Connected users without a subscription, for operators (the marker set above, so no scan)."""
    return list(db.users.find({"subscription_missing_since": {"$exists": True}, "connection.status": CONNECTED},
                              {"email": 1, "subscription_missing_since": 1}).hint(MISSING_SUBSCRIPTION))


# ------------------------------------------------------------------ digest schedule (service.digest.plan)

def set_next_digest(db: Database, user_id: str, local_date, instant: datetime | None) -> None:
    """Store the user's next digest (None, None: they get none until rescheduled)."""
    db.users.update_one({"_id": user_id}, {"$set": {
        "digest.next_date": local_date.isoformat() if local_date else None, "digest.next_at": instant}})


def digests_due(db: Database, now: datetime, limit: int) -> list[dict]:
    """Up to ``limit`` users whose next digest instant has come, earliest first (one index range)."""
    return list(db.users.find({"digest.next_at": {"$lte": now}}, DIGEST_FIELDS).sort("digest.next_at", ASCENDING)
                .limit(limit))


DIGEST_FIELDS = {"_id": 1, "time_zone": 1, "graph_time_zone": 1, "digest": 1, "connection.status": 1}


def advance_digest(db: Database, user_id: str, expected_at: datetime | None, handled_date: str | None,
                   next_date, next_at: datetime | None) -> bool:
    """Move a due user to their following digest if nobody else did since we read ``expected_at``."""
    result = db.users.update_one(
        {"_id": user_id, "digest.next_at": expected_at},
        {"$set": {"digest.last_date": handled_date, "digest.next_date": next_date.isoformat() if next_date else None,
                  "digest.next_at": next_at}},
    )
    return result.matched_count == 1


def without_digest_schedule(db: Database) -> list[str]:
    """Ids of users stored before digests were scheduled by instant (a one-time migration)."""
    return [u["_id"] for u in db.users.find({"digest.next_at": {"$exists": False}}, {"_id": 1})]


# ------------------------------------------------------------------ subscription repair marker

def mark_subscription_missing(db: Database, user_id: str, since: datetime | None = None) -> None:
    """The user should hold a subscription and does not (yet): the renewal sweep repairs it if it stays so."""
    db.users.update_one({"_id": user_id, "subscription_missing_since": {"$exists": False}},
                        {"$set": {"subscription_missing_since": since or utcnow()}})


def clear_subscription_missing(db: Database, user_id: str) -> None:
    db.users.update_one({"_id": user_id}, {"$unset": {"subscription_missing_since": ""}})


def missing_subscription_since_before(db: Database, cutoff: datetime) -> list[str]:
    """Connected users that have waited for a subscription since before ``cutoff``."""
    found = db.users.find({"subscription_missing_since": {"$lt": cutoff}, "connection.status": CONNECTED},
                          {"_id": 1}).hint(MISSING_SUBSCRIPTION)
    return [u["_id"] for u in found]
