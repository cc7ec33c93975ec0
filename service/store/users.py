"""Users: one document per connected Microsoft account, keyed by the Graph user id (oid).

Readers get :class:`~service.store.records.User` records; writers are named for what they change, so no
caller needs to know the document's shape (docs/design.md has it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database

from service.store import activity, as_utc, utcnow
from service.store.records import APP_SOURCE, USER_SOURCE, ConnectionStatus, User

CONNECTED = ConnectionStatus.CONNECTED.value
NEEDS_RECONNECT = ConnectionStatus.NEEDS_RECONNECT.value
DISCONNECTED = ConnectionStatus.DISCONNECTED.value
CANNOT_SYNC = ConnectionStatus.CANNOT_SYNC.value

BY_EMAIL = "email"
BY_STATUS_AND_LAST_SYNC = "status_last_sync"
MISSING_SUBSCRIPTION = "subscription_missing_since"

INDEXES = {
    "users": [
        IndexModel([("email", ASCENDING)], name=BY_EMAIL),
        # Connected users by last sync (the reconcile sweep); its prefix serves the status lookups.
        IndexModel([("connection.status", ASCENDING), ("sync.last_sync_at", ASCENDING)],
                   name=BY_STATUS_AND_LAST_SYNC),
        IndexModel([("digest.next_at", ASCENDING)], name="digest_next_at"),     # the digest tick
        # Only users waiting for a subscription carry the field: the repair sweep reads just those.
        IndexModel([("subscription_missing_since", ASCENDING)], name=MISSING_SUBSCRIPTION, sparse=True),
    ],
}
RETIRED_INDEXES = {"users": ["connection_status"]}


def _record(doc: dict | None) -> User | None:
    return User.from_doc(doc) if doc else None


def ids_with_email_prefix(db: Database, prefix: str, limit: int) -> list[str]:
    """Ids of up to ``limit`` users whose (lower-cased) email starts with ``prefix``: a range of the email index."""
    prefix = prefix.strip().lower()
    if not prefix:
        return []
    bounds = {"$gte": prefix}
    if ord(prefix[-1]) < 0x10FFFF:
        bounds["$lt"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the first string past every one with the prefix
    found = db.users.find({"email": bounds}, {"_id": 1}).sort("email", ASCENDING).hint(BY_EMAIL).limit(limit)
    return [user["_id"] for user in found]


def get(db: Database, user_id: str) -> User | None:
    return _record(db.users.find_one({"_id": user_id})) if isinstance(user_id, str) else None


def by_email(db: Database, email: str) -> User | None:
    return _record(db.users.find_one({"email": email.strip().lower()}))


def find(db: Database, email_or_id: str) -> User | None:
    """Look a user up by Graph id or by email (the API accepts either)."""
    return get(db, email_or_id) or by_email(db, email_or_id)


def upsert_from_graph(
    db: Database, me: dict, tenant_id: str, home_account_id: str, now: datetime | None = None
) -> User:
    """Create or refresh a user from Graph's /me; (re)connecting keeps identity, history and preferences."""
    now = now or utcnow()
    email = (me.get("mail") or me.get("userPrincipalName") or "").strip().lower()
    return User.from_doc(db.users.find_one_and_update(
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
                "entra_id": me["id"],
                "has_user_grant": True,
                "updated_at": now,
            },
            # Connecting is consent: an earlier opt-out no longer applies.
            "$unset": {"opted_out_at": ""},
            "$setOnInsert": {
                "created_at": now,
                "graph_ids": "immutable",   # nothing stored yet: every id calsync stores will be immutable
                "time_zone": None,
                "digest": {"enabled": True, "time": None, "send_empty": False},
                "sync": {"error_count": 0},
            },
        },
        upsert=True,
        return_document=ReturnDocument.AFTER,
    ))


def token_source(db: Database, user_id: str) -> str:
    """"app" when the user's mailbox is read with their tenant's application token, else "user"."""
    found = db.users.find_one({"_id": user_id}, {"token_source": 1}) if isinstance(user_id, str) else None
    return (found or {}).get("token_source") or USER_SOURCE


def mark_tenant_needs_admin(db: Database, tenant_id: str, reason: str, now: datetime | None = None) -> list[str]:
    """Every tenant-wide mailbox of the tenant that was connected (or could not sync) now waits for the admin;
    returns the ids that changed."""
    now = now or utcnow()
    query = {"tenant_id": tenant_id, "token_source": APP_SOURCE, "connection.status": {"$in": [CONNECTED, CANNOT_SYNC]}}
    ids = [doc["_id"] for doc in db.users.find(query, {"_id": 1})]
    if ids:
        db.users.update_many({"_id": {"$in": ids}, **query}, {"$set": {
            "connection.status": ConnectionStatus.NEEDS_ADMIN.value, "connection.reason": reason,
            "connection.since": now, "updated_at": now}})
    return ids


def delete(db: Database, user_id: str) -> bool:
    """Forget the user record itself (the last step of deleting everything we hold about them)."""
    return db.users.delete_one({"_id": user_id}).deleted_count == 1


def set_connection_status(
    db: Database, user_id: str, status: ConnectionStatus, reason: str | None = None, now: datetime | None = None
) -> User | None:
    """Record a connection state change; returns the user as they were before (None if unknown)."""
    now = now or utcnow()
    before = _record(db.users.find_one_and_update(
        {"_id": user_id},
        {"$set": {"connection.status": str(status), "connection.reason": reason, "connection.since": now,
                  "updated_at": now}},
    ))
    if before is not None:
        activity.note(db, user_id, "connection", now, f"connection: {status}", status=str(status), reason=reason)
    return before


def mark_needs_reconnect(db: Database, user_id: str, reason: str, now: datetime | None = None) -> bool:
    """Move a connected user to needs_reconnect; True only for the call that made the change."""
    now = now or utcnow()
    result = db.users.update_one(
        {"_id": user_id, "connection.status": CONNECTED},
        {"$set": {"connection.status": NEEDS_RECONNECT, "connection.reason": reason, "connection.since": now,
                  "updated_at": now}},
    )
    if result.modified_count == 1:
        activity.note(db, user_id, "connection", now, f"connection: {NEEDS_RECONNECT}", status=NEEDS_RECONNECT,
                      reason=reason)
    return result.modified_count == 1


def mark_cannot_sync(db: Database, user_id: str, reason: str, next_check_at: datetime,
                     now: datetime | None = None) -> ConnectionStatus | None:
    """A connected (or already cannot_sync) user's mailbox cannot be read; returns the status before (None when
    the user is neither: disconnected users stay so). ``since`` keeps the first time while the reason holds."""
    now = now or utcnow()
    before = db.users.find_one_and_update(
        {"_id": user_id, "connection.status": {"$in": [CONNECTED, CANNOT_SYNC]}},
        {"$set": {"connection.status": CANNOT_SYNC, "connection.reason": reason,
                  "connection.next_check_at": next_check_at, "updated_at": now},
         "$unset": {"subscription_missing_since": ""}})
    if before is None:
        return None
    previous = User.from_doc(before).connection
    if previous.status != ConnectionStatus.CANNOT_SYNC or previous.reason != reason:
        db.users.update_one({"_id": user_id}, {"$set": {"connection.since": now}})
    return previous.status


def set_next_mailbox_check(db: Database, user_id: str, at: datetime) -> None:
    db.users.update_one({"_id": user_id, "connection.status": CANNOT_SYNC}, {"$set": {"connection.next_check_at": at}})


def mark_available(db: Database, user_id: str, now: datetime | None = None) -> bool:
    """A cannot_sync user's mailbox answers again: connected; True only for the call that made the change."""
    now = now or utcnow()
    return db.users.update_one(
        {"_id": user_id, "connection.status": CANNOT_SYNC},
        {"$set": {"connection.status": CONNECTED, "connection.reason": None, "connection.since": now,
                  "updated_at": now}, "$unset": {"connection.next_check_at": ""}}).modified_count == 1


def cannot_sync_due(db: Database, now: datetime) -> list[str]:
    """Users who cannot sync and whose next mailbox check is due (a prefix of the status index; they are few)."""
    found = db.users.find({"connection.status": CANNOT_SYNC}, {"connection.next_check_at": 1}).hint(
        BY_STATUS_AND_LAST_SYNC)
    return [u["_id"] for u in found
            if (as_utc((u.get("connection") or {}).get("next_check_at")) or now) <= now]


def with_status(db: Database, status: str, limit: int) -> list[User]:
    """Users of one connection status, for operators (a prefix of the status index)."""
    found = db.users.find({"connection.status": status}).hint(BY_STATUS_AND_LAST_SYNC).limit(limit)
    return [User.from_doc(doc) for doc in found]


def claim_reconnect_mail(db: Database, user_id: str, interval: timedelta, now: datetime | None = None) -> User | None:
    """Atomically take the right to send a reconnect mail (none sent within ``interval``).

    Returns the user as they were before the claim, or None when a mail went out too recently or the user
    no longer needs to reconnect.
    """
    now = now or utcnow()
    return _record(db.users.find_one_and_update(
        {
            "_id": user_id,
            "connection.status": NEEDS_RECONNECT,
            "$or": [
                {"connection.reconnect_mail_sent_at": None},
                {"connection.reconnect_mail_sent_at": {"$lte": now - interval}},
            ],
        },
        {"$set": {"connection.reconnect_mail_sent_at": now}},
    ))


def release_reconnect_mail(db: Database, user_id: str, claimed_at: datetime, previous: datetime | None) -> None:
    """Undo a claim whose mail could not be sent, so a retry may send it."""
    db.users.update_one(
        {"_id": user_id, "connection.reconnect_mail_sent_at": claimed_at},
        {"$set": {"connection.reconnect_mail_sent_at": previous}},
    )


# ------------------------------------------------------------------ preferences

def set_time_zone_if_unset(db: Database, user_id: str, time_zone: str) -> bool:
    """Take the browser's IANA zone as the user's preference unless one is already recorded."""
    result = db.users.update_one(
        {"_id": user_id, "$or": [{"time_zone": None}, {"time_zone": {"$exists": False}}]},
        {"$set": {"time_zone": time_zone, "time_zone_source": "browser", "updated_at": utcnow()}},
    )
    return result.modified_count == 1


def choose_time_zone(db: Database, user_id: str, time_zone: str) -> None:
    """The user picked a zone on the settings page: it wins over anything inferred later."""
    db.users.update_one({"_id": user_id}, {"$set": {"time_zone": time_zone, "time_zone_source": "user",
                                                    "updated_at": utcnow()}})


def record_inferred_time_zone(db: Database, user_id: str, graph_zone: str, iana: str) -> None:
    """The zone the user's own meetings use most (Graph's name) and its IANA name."""
    db.users.update_one({"_id": user_id}, {"$set": {"graph_time_zone": graph_zone, "time_zone": iana,
                                                    "updated_at": utcnow()}})


def set_digest_preferences(db: Database, user_id: str, *, enabled: bool | None = None, time: str | None = None,
                           send_empty: bool | None = None, days: Iterable[int] | None = None) -> None:
    """Change whichever digest preferences are given (``days``: weekday numbers, 0 = Monday)."""
    fields = {f"digest.{name}": value for name, value in
              (("enabled", enabled), ("time", time), ("send_empty", send_empty),
               ("days", sorted(set(days)) if days is not None else None)) if value is not None}
    if fields:
        db.users.update_one({"_id": user_id}, {"$set": {**fields, "updated_at": utcnow()}})


UNCHANGED = object()


def set_prep_preferences(db: Database, user_id: str, *, minutes: int | None | object = UNCHANGED,
                         meetings: str | None = None, min_size: int | None = None) -> None:
    """Change whichever meeting-prep preferences are given (``minutes=None`` turns prep off)."""
    fields = {f"prep.{name}": value for name, value in (("meetings", meetings), ("min_size", min_size))
              if value is not None}
    if minutes is not UNCHANGED:
        fields["prep.minutes"] = minutes
    if fields:
        db.users.update_one({"_id": user_id}, {"$set": {**fields, "updated_at": utcnow()}})


def by_ids(db: Database, user_ids: Iterable[str]) -> dict[str, User]:
    """The users among ``user_ids``, by id (one query by _id)."""
    wanted = sorted(set(user_ids))
    return {u["_id"]: User.from_doc(u) for u in db.users.find({"_id": {"$in": wanted}})} if wanted else {}


def listing(db: Database, status: str | None = None, limit: int = 1000) -> list[User]:
    """Users by email (optionally of one connection status, whatever it is), at most ``limit``: for the CLI."""
    query = {"connection.status": status} if status else {}
    index = BY_STATUS_AND_LAST_SYNC if status else BY_EMAIL
    return [User.from_doc(u) for u in db.users.find(query).sort("email", ASCENDING).hint(index).limit(limit)]


PREP_FIELDS = {"_id": 1, "email": 1, "tenant_id": 1, "time_zone": 1, "graph_time_zone": 1, "prep": 1,
               "connection.status": 1}


def for_prep(db: Database, user_ids: Iterable[str]) -> dict[str, User]:
    """The users among ``user_ids`` (one query by _id), with what deciding a prep needs."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    return {u["_id"]: User.from_doc(u) for u in db.users.find({"_id": {"$in": wanted}}, PREP_FIELDS)}


# ------------------------------------------------------------------ sync observability (users.sync)

def record_immutable_ids(db: Database, user_id: str, at: datetime) -> None:
    """The user's stored ids are Graph's immutable ones from now on (service.sync.ids)."""
    db.users.update_one({"_id": user_id}, {"$set": {"graph_ids": "immutable", "graph_ids_at": at}})


def record_calendars_refreshed(db: Database, user_id: str, at: datetime) -> None:
    """When the user's calendar list was last read from Graph (it is read again after a while)."""
    db.users.update_one({"_id": user_id}, {"$set": {"sync.calendars_refreshed_at": at}})


def touch_notification(db: Database, user_id: str, at: datetime) -> None:
    """A change notification for this user arrived at ``at``."""
    db.users.update_one({"_id": user_id}, {"$set": {"sync.last_notification_at": at}})
    activity.note(db, user_id, "notification", at, "change notification from Graph")


def record_sync_success(db: Database, user_id: str, now: datetime, result: str, lag_seconds: float | None,
                        calendars_refreshed_at: datetime | None = None) -> None:
    """A sync round finished: last time, result, lag (event change → stored); consecutive errors reset. With
    ``calendars_refreshed_at``, the round read the calendar list then (``record_calendars_refreshed``, in the
    same write)."""
    fields: dict = {"sync.last_sync_at": now, "sync.last_result": result, "sync.last_error": None,
                    "sync.error_count": 0, "updated_at": now}
    if calendars_refreshed_at is not None:
        fields["sync.calendars_refreshed_at"] = calendars_refreshed_at
    if lag_seconds is not None:
        fields["sync.lag_seconds"] = round(lag_seconds, 3)
    db.users.update_one({"_id": user_id}, {"$set": fields})
    activity.note(db, user_id, "sync", now, f"synced ({result})", result=result,
                  lag_seconds=round(lag_seconds, 3) if lag_seconds is not None else None)


def record_sync_failure(db: Database, user_id: str, now: datetime, result: str, error: str,
                        calendars_refreshed_at: datetime | None = None) -> None:
    """A sync round failed or was postponed; ``error`` is a short code, never a body or token.
    ``calendars_refreshed_at`` as for ``record_sync_success``."""
    fields = {"sync.last_attempt_at": now, "sync.last_result": result, "sync.last_error": error[:200],
              "updated_at": now}
    if calendars_refreshed_at is not None:
        fields["sync.calendars_refreshed_at"] = calendars_refreshed_at
    db.users.update_one({"_id": user_id}, {"$set": fields, "$inc": {"sync.error_count": 1, "sync.errors_total": 1}})
    activity.note(db, user_id, "error", now, f"sync {result}: {error}", result=result, error=error)


def stale(db: Database, cutoff: datetime) -> list[str]:
    """Connected users not synced since ``cutoff`` (Graph can drop notifications silently).

    Two ranges of the (connection.status, sync.last_sync_at) index: never synced, and synced before.
    """
    found = []
    for last in (None, {"$lt": cutoff}):
        query = {"connection.status": CONNECTED, "sync.last_sync_at": last}
        found += [u["_id"] for u in db.users.find(query, {"_id": 1}).hint(BY_STATUS_AND_LAST_SYNC)]
    return found


# ------------------------------------------------------------------ batches

def connected_ids(db: Database) -> list[str]:
    """Ids of every connected user (migrations only: sweeps read indexed subsets)."""
    query = {"connection.status": CONNECTED}
    return [u["_id"] for u in db.users.find(query, {"_id": 1}).hint(BY_STATUS_AND_LAST_SYNC)]


def connected_among(db: Database, user_ids: Iterable[str]) -> set[str]:
    """Which of ``user_ids`` are connected (one query by _id)."""
    found = db.users.find({"_id": {"$in": list(set(user_ids))}}, {"connection.status": 1})
    return {u["_id"] for u in found if (u.get("connection") or {}).get("status") == CONNECTED}


def missing_subscriptions(db: Database) -> list[User]:
    """Connected users without a subscription, for operators (the marker set above, so no scan)."""
    query = {"subscription_missing_since": {"$exists": True}, "connection.status": CONNECTED}
    return [User.from_doc(u) for u in db.users.find(query, {"email": 1, "subscription_missing_since": 1})
            .hint(MISSING_SUBSCRIPTION)]


def needing_reconnect(db: Database) -> list[User]:
    query = {"connection.status": NEEDS_RECONNECT}
    return [User.from_doc(u) for u in db.users.find(query, {"email": 1, "display_name": 1, "connection": 1})
            .hint(BY_STATUS_AND_LAST_SYNC)]


# ------------------------------------------------------------------ digest schedule (service.digest.plan)

def set_next_digest(db: Database, user_id: str, local_date: date | None, instant: datetime | None) -> None:
    """Store the user's next digest (None, None: they get none until rescheduled)."""
    db.users.update_one({"_id": user_id}, {"$set": {
        "digest.next_date": local_date.isoformat() if local_date else None, "digest.next_at": instant}})


def digests_due(db: Database, now: datetime, limit: int) -> list[User]:
    """Up to ``limit`` users whose next digest instant has come, earliest first (one index range)."""
    found = db.users.find({"digest.next_at": {"$lte": now}}, DIGEST_FIELDS).sort("digest.next_at", ASCENDING)
    return [User.from_doc(u) for u in found.limit(limit)]


DIGEST_FIELDS = {"_id": 1, "time_zone": 1, "graph_time_zone": 1, "digest": 1, "connection.status": 1}


def advance_digest(db: Database, user_id: str, expected_at: datetime | None, handled_date: str | None,
                   next_date: date | None, next_at: datetime | None) -> bool:
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
