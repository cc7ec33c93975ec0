"""Read-only reporting queries for operators, across the domain collections.

The subscriptions table is read a page at a time by keyset, ``(expires_at, _id)``, through an index that
ends in ``_id`` (so the rows come in index order and a page reads about ``limit`` index entries however
many subscriptions there are); search goes through the ``_id``, ``user_id`` and users' ``email``
indexes, never a scan of all subscriptions. Range and sort queries name their index; equality lookups
by ``_id`` and ``user_id`` are left to the planner, which picks the index on MongoDB and SecantusDB
alike (and SecantusDB answers a hinted ``$in`` a thousand times slower).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from service.store import as_utc
from service.store import subscriptions as subscription_store
from service.store import users as user_store
from service.store.records import ConnectionStatus, SubscriptionStatus

INDEXES: dict = {}

Key = tuple[datetime, str]   # (expires_at, _id) of a subscription: where a page starts or ends


@dataclass(frozen=True)
class Page:
    """Rows soonest expiry first, with each row's owner email and connection status."""

    rows: list[dict]
    next_key: Key | None = None      # rows follow, after this key
    previous_key: Key | None = None  # rows come before this key


def subscriptions_page(db: Database, limit: int, status: str | None = None, after: Key | None = None,
                       before: Key | None = None) -> Page:
    """A page of subscriptions (optionally of one status) after or before a key, or the first page."""
    backwards = before is not None
    key = before if backwards else after
    query: dict = {"status": status} if status else {}
    if key is not None:
        edge, equal = ("$lte", "$gte") if backwards else ("$gte", "$lte")
        query["expires_at"] = {edge: key[0]}
        query["$nor"] = [{"expires_at": key[0], "_id": {equal: key[1]}}]   # the key's own row and its side
    order = DESCENDING if backwards else ASCENDING
    index = subscription_store.BY_STATUS_AND_EXPIRY if status else subscription_store.BY_EXPIRY
    rows = list(db.subscriptions.find(query).sort([("expires_at", order), ("_id", order)]).hint(index)
                .limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        if not more:  # back at the start: show a full first page rather than a short one
            return subscriptions_page(db, limit, status)
        rows.reverse()
    _attach_owners(db, rows)
    first, last = (_key(rows[0]), _key(rows[-1])) if rows else (None, None)
    return Page(rows, next_key=last if (more or backwards) else None,
                previous_key=first if (backwards or key is not None) else None)


def search_subscriptions(db: Database, text: str, limit: int, status: str | None = None) -> tuple[list[dict], bool]:
    """Subscriptions whose id or owner's id is ``text``, or whose owner's email starts with it, soonest expiry
    first; and whether more than ``limit`` matched."""
    text = text.strip()
    if not text:
        return [], False
    owners = [text, *user_store.ids_with_email_prefix(db, text, limit + 1)]
    found = {doc["_id"]: doc for doc in db.subscriptions.find({"_id": text})}
    found.update((doc["_id"], doc) for doc in db.subscriptions.find({"user_id": {"$in": owners}}))
    # The status is checked here, not in the lookups: a lookup stays one equality on its index.
    rows = sorted((doc for doc in found.values() if status is None or doc.get("status") == status), key=_key)
    _attach_owners(db, rows[:limit])
    return rows[:limit], len(rows) > limit


def _key(row: dict) -> Key:
    return as_utc(row["expires_at"]), row["_id"]


def _attach_owners(db: Database, rows: list[dict]) -> None:
    """Each row's owner email and connection status, read in one batch by ``_id``."""
    user_ids = list({row.get("user_id") for row in rows})
    owners = {user["_id"]: user for user in
              db.users.find({"_id": {"$in": user_ids}}, {"email": 1, "connection.status": 1})}
    for row in rows:
        owner = owners.get(row.get("user_id"), {})
        row["user_email"] = owner.get("email")
        row["connection_status"] = (owner.get("connection") or {}).get("status")


def gauge_counts(db: Database, now: datetime, soon: timedelta) -> dict[str, dict[str, int] | int]:
    """The metrics scrape's counts, each answered from an index or the collection's metadata (no scan)."""
    return {
        "users": {str(status): db.users.count_documents({"connection.status": str(status)},
                                                       hint=user_store.BY_STATUS_AND_LAST_SYNC)
                  for status in ConnectionStatus},
        "subscriptions": {str(status): db.subscriptions.count_documents(
            {"status": str(status)}, hint=subscription_store.BY_STATUS_AND_EXPIRY) for status in SubscriptionStatus},
        "subscriptions_expiring_soon": db.subscriptions.count_documents(
            {"expires_at": {"$lt": now + soon}}, hint=subscription_store.BY_EXPIRY),
        "subscriptions_expired": db.subscriptions.count_documents(
            {"expires_at": {"$lt": now}}, hint=subscription_store.BY_EXPIRY),
        "events_stored": db.events.estimated_document_count(),
    }


def counts(db: Database, now: datetime, soon: timedelta) -> dict[str, int]:
    """Headline numbers for the dashboard and the metrics endpoint."""
    return {
        "users_total": db.users.count_documents({}),
        "users_connected": db.users.count_documents({"connection.status": "connected"}),
        "users_needs_reconnect": db.users.count_documents({"connection.status": "needs_reconnect"}),
        "subscriptions_total": db.subscriptions.count_documents({}),
        "subscriptions_failing": db.subscriptions.count_documents({"failures": {"$gt": 0}}),
        "subscriptions_expiring_soon": db.subscriptions.count_documents({"expires_at": {"$lt": now + soon}}),
        "subscriptions_expired": db.subscriptions.count_documents({"expires_at": {"$lt": now}}),
        "users_with_sync_errors": db.users.count_documents({"sync.error_count": {"$gt": 0}}),
        "events_stored": db.events.estimated_document_count(),
    }


def delivery_health(db: Database, since: datetime) -> dict[str, int]:
    """Digests and prep mails sent and failed since ``since`` (an operator's day), each a count on the
    ``status_finished`` index."""
    found = {}
    for collection, name in (("digests_sent", "digests"), ("preps_sent", "preps")):
        for status in ("sent", "failed"):
            found[f"{name}_{status}"] = db[collection].count_documents(
                {"status": status, "finished_at": {"$gte": since}}, hint="status_finished")
    return found
