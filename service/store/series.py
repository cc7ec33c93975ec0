"""How each recurring series ends, as its master says (``recurrence.range``), for recurring-meeting hygiene.

``series_ranges``: ``{user_id, master_id, range_type: "endDate" | "noEnd" | "numbered", end_date (YYYY-MM-DD or
null), checked_at}``, unique on ``(user_id, master_id)``; written by the sync's series check, which reads the
master anyway. A series never checked has no row: hygiene then reads its end from the stored occurrences.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.database import Database

INDEXES = {
    "series_ranges": [IndexModel([("user_id", ASCENDING), ("master_id", ASCENDING)], unique=True,
                                 name="user_master_unique")],
}
RANGE_TYPES = ("endDate", "noEnd", "numbered")


def range_of(master: object) -> dict | None:
    """``{range_type, end_date}`` from a series master's ``recurrence.range`` (None when it has none)."""
    recurrence = master.get("recurrence") if isinstance(master, dict) else None
    found = recurrence.get("range") if isinstance(recurrence, dict) else None
    if not isinstance(found, dict) or found.get("type") not in RANGE_TYPES:
        return None
    end = found.get("endDate") if found.get("type") == "endDate" and isinstance(found.get("endDate"), str) else None
    return {"range_type": found["type"], "end_date": end[:10] if end else None}


def record(db: Database, user_id: str, ranges: dict[str, dict], now: datetime) -> None:
    if ranges:
        db.series_ranges.bulk_write([UpdateOne({"user_id": user_id, "master_id": master},
                                               {"$set": {**found, "checked_at": now}}, upsert=True)
                                     for master, found in sorted(ranges.items())], ordered=False)


def for_user(db: Database, user_id: str, master_ids: Iterable[str]) -> dict[str, dict]:
    wanted = sorted(set(master_ids))
    if not wanted:
        return {}
    return {doc["master_id"]: doc for doc in db.series_ranges.find({"user_id": user_id, "master_id": {"$in": wanted}})}


def delete_for_user(db: Database, user_id: str) -> int:
    return db.series_ranges.delete_many({"user_id": user_id}).deleted_count
