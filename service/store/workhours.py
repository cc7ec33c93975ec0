"""Working hours on the user document (``users.working_hours``), read and written apart from the rest of it.

``{start: "09:00", end: "17:00", days: [0..4], source: "default" | "settings" | "outlook", time_zone?}``;
absent means the standard hours. Validation lives in ``service.insights.workhours``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pymongo.database import Database

from service.store import utcnow

FIELD = "working_hours"


def get(db: Database, user_id: str) -> dict | None:
    doc = db.users.find_one({"_id": user_id}, {FIELD: 1})
    return (doc or {}).get(FIELD)


def for_ids(db: Database, user_ids: Iterable[str]) -> dict[str, dict | None]:
    """user id -> stored working hours (None when the user has none), in one query."""
    wanted = sorted(set(user_ids))
    found = {user_id: None for user_id in wanted}
    for doc in db.users.find({"_id": {"$in": wanted}}, {FIELD: 1}):
        found[doc["_id"]] = doc.get(FIELD)
    return found


def save(db: Database, user_id: str, working_hours: dict) -> bool:
    """Store a user's working hours; False when there is no such user."""
    result = db.users.update_one({"_id": user_id}, {"$set": {FIELD: working_hours, "updated_at": utcnow()}})
    return result.matched_count == 1


def save_from_outlook(db: Database, user_id: str, working_hours: dict) -> bool:
    """Store Outlook's working hours unless the person chose their own (the settings page wins)."""
    result = db.users.update_one({"_id": user_id, f"{FIELD}.source": {"$ne": "settings"}},
                                 {"$set": {FIELD: working_hours, "updated_at": utcnow()}})
    return result.modified_count == 1


def outlook_candidates(db: Database) -> list[str]:
    """Connected users whose working hours Outlook may set (none chosen on the settings page)."""
    query = {"connection.status": "connected", f"{FIELD}.source": {"$ne": "settings"}}
    return [doc["_id"] for doc in db.users.find(query, {"_id": 1})]
