"""Which coaching tips a user was shown on which local day, so a tip is not repeated within 14 days, and what
the user said of a tip.

``coaching_shown {_id: "<user_id>:<yyyy-mm-dd>", user_id, date, tips: [tip keys], expires_at}``: one small
document per day a user's tips were produced (the API, the digest), kept 30 days (TTL); each call adds the
tips it showed (the API's suggestions and the digest's tips on one day are one set).
``coaching_feedback {_id: "<user_id>:<tip key>", user_id, tip, person_id, verdict: useful|not_useful, at}``: the
latest verdict per tip, from the digest's "useful / not useful" links; kept until the user's data is deleted.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from service.store import utcnow

KEEP = timedelta(days=30)

USEFUL = "useful"
NOT_USEFUL = "not_useful"
VERDICTS = (USEFUL, NOT_USEFUL)

INDEXES = {
    "coaching_shown": [
        IndexModel([("user_id", ASCENDING), ("date", ASCENDING)], name="user_date"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at"),
    ],
    "coaching_feedback": [
        IndexModel([("user_id", ASCENDING), ("at", ASCENDING)], name="user_at"),
    ],
}


def shown_between(db: Database, user_id: str, first: date, last: date) -> dict[str, set[str]]:
    """date (ISO) → the tip keys shown that day, for days in [first, last]."""
    found = db.coaching_shown.find({"user_id": user_id, "date": {"$gte": first.isoformat(), "$lte": last.isoformat()}},
                                   {"date": 1, "tips": 1}).hint("user_date")
    return {doc["date"]: set(doc.get("tips") or []) for doc in found}


def record(db: Database, user_id: str, day: date, tips: list[str]) -> None:
    """Add what the user is shown on ``day`` (the same day asked again shows, and records, the same)."""
    expires = max(datetime.combine(day, time(0), tzinfo=UTC), utcnow()) + KEEP   # by the server's clock
    db.coaching_shown.update_one({"_id": f"{user_id}:{day.isoformat()}"},
                                 {"$set": {"user_id": user_id, "date": day.isoformat(), "updated_at": utcnow(),
                                           "expires_at": expires},
                                  "$addToSet": {"tips": {"$each": list(tips)}}}, upsert=True)


def record_feedback(db: Database, user_id: str, tip: str, person_id: str | None, verdict: str,
                    now: datetime | None = None) -> None:
    """The user's latest verdict on a tip (a second click changes it)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
    db.coaching_feedback.update_one({"_id": f"{user_id}:{tip}"},
                                    {"$set": {"user_id": user_id, "tip": tip, "person_id": person_id,
                                              "verdict": verdict, "at": now or utcnow()}}, upsert=True)


def feedback(db: Database, user_id: str) -> dict[str, str]:
    """tip key → the user's verdict on it."""
    found = db.coaching_feedback.find({"user_id": user_id}, {"tip": 1, "verdict": 1}).hint("user_at")
    return {doc["tip"]: doc["verdict"] for doc in found}


def feedback_for_user(db: Database, user_id: str) -> list[dict]:
    """The user's verdicts, oldest first (their data export)."""
    found = db.coaching_feedback.find({"user_id": user_id}, {"_id": 0, "user_id": 0}).sort("at", ASCENDING)
    return list(found.hint("user_at"))


def delete_for_user(db: Database, user_id: str) -> int:
    return (db.coaching_shown.delete_many({"user_id": user_id}).deleted_count
            + db.coaching_feedback.delete_many({"user_id": user_id}).deleted_count)
