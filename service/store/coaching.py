"""Which coaching tips a user was shown on which local day, so a tip is not repeated within 14 days.

``{_id: "<user_id>:<yyyy-mm-dd>", user_id, date, tips: [tip keys], expires_at}``: one small document per
day a user's suggestions were produced (the API or the digest), kept 30 days (TTL).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from service.store import utcnow

KEEP = timedelta(days=30)

INDEXES = {
    "coaching_shown": [
        IndexModel([("user_id", ASCENDING), ("date", ASCENDING)], name="user_date"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at"),
    ],
}


def shown_between(db: Database, user_id: str, first: date, last: date) -> dict[str, set[str]]:
    """date (ISO) → the tip keys shown that day, for days in [first, last]."""
    found = db.coaching_shown.find({"user_id": user_id, "date": {"$gte": first.isoformat(), "$lte": last.isoformat()}},
                                   {"date": 1, "tips": 1}).hint("user_date")
    return {doc["date"]: set(doc.get("tips") or []) for doc in found}


def record(db: Database, user_id: str, day: date, tips: list[str]) -> None:
    """What the user is shown on ``day`` (the same day asked again shows, and records, the same)."""
    expires = max(datetime.combine(day, time(0), tzinfo=UTC), utcnow()) + KEEP   # by the server's clock
    db.coaching_shown.update_one({"_id": f"{user_id}:{day.isoformat()}"},
                                 {"$set": {"user_id": user_id, "date": day.isoformat(), "tips": tips,
                                           "updated_at": utcnow(), "expires_at": expires}}, upsert=True)


def delete_for_user(db: Database, user_id: str) -> int:
    return db.coaching_shown.delete_many({"user_id": user_id}).deleted_count
