"""Users: one document per connected Microsoft account, keyed by the Graph user id (oid)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database

from service.store import utcnow

CONNECTED = "connected"
NEEDS_RECONNECT = "needs_reconnect"
DISCONNECTED = "disconnected"

INDEXES = {
    "users": [
        IndexModel([("email", ASCENDING)], name="email"),
        IndexModel([("connection.status", ASCENDING)], name="connection_status"),
    ],
}


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


def connected(db: Database, projection: dict | None = None) -> Iterator[dict]:
    """Every user whose calendar we may read now."""
    return db.users.find({"connection.status": CONNECTED}, projection)


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


def connected_since_before(db: Database, cutoff: datetime) -> list[str]:
    """Ids of users connected since before ``cutoff`` (settled: their connect-time jobs have run)."""
    return [u["_id"] for u in db.users.find({"connection.status": CONNECTED, "connection.since": {"$lt": cutoff}},
                                            {"_id": 1})]
