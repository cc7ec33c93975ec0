"""Meetings a user keeps out of insights (``exclusions``): one meeting, or every occurrence of a series.

``{_id, user_id, kind: "meeting" | "series", key, created_at}``, unique on (user_id, kind, key). A meeting
is named by its ``iCalUId`` (the same on every calendar it appears in, so excluding it once excludes all its
copies), a series by its ``seriesMasterId``. Nothing about the meeting itself is kept here: a private
meeting excluded stays private.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from service.store import utcnow

MEETING = "meeting"
SERIES = "series"
KINDS = (MEETING, SERIES)
BY_USER = "user_kind_key"

INDEXES = {
    "exclusions": [IndexModel([("user_id", ASCENDING), ("kind", ASCENDING), ("key", ASCENDING)], unique=True,
                              name=BY_USER)],
}


@dataclass(frozen=True)
class Excluded:
    meetings: frozenset[str] = field(default_factory=frozenset)   # iCalUIds
    series: frozenset[str] = field(default_factory=frozenset)     # seriesMasterIds

    def __bool__(self) -> bool:
        return bool(self.meetings or self.series)

    def covers(self, event: dict) -> bool:
        return ((event.get("ical_uid") or event.get("graph_id")) in self.meetings
                or (event.get("series_master_id") or event.get("graph_id")) in self.series)


def add(db: Database, user_id: str, kind: str, key: str, now: datetime | None = None) -> bool:
    """Exclude; True if it was not excluded before."""
    if kind not in KINDS or not key:
        raise ValueError("unknown exclusion")
    try:
        db.exclusions.insert_one({"user_id": user_id, "kind": kind, "key": key, "created_at": now or utcnow()})
    except DuplicateKeyError:
        return False
    return True


def remove(db: Database, user_id: str, kind: str, key: str) -> bool:
    """Undo an exclusion; True if there was one."""
    return db.exclusions.delete_one({"user_id": user_id, "kind": kind, "key": key}).deleted_count == 1


def for_user(db: Database, user_id: str) -> Excluded:
    found: dict[str, set[str]] = {MEETING: set(), SERIES: set()}
    for doc in db.exclusions.find({"user_id": user_id}, {"kind": 1, "key": 1}):
        found.setdefault(doc["kind"], set()).add(doc["key"])
    return Excluded(frozenset(found[MEETING]), frozenset(found[SERIES]))


def listed(db: Database, user_id: str) -> list[dict]:
    """Every exclusion of the user, newest first (for their data export and settings)."""
    found = db.exclusions.find({"user_id": user_id}, {"_id": 0, "user_id": 0})
    return sorted(found, key=lambda d: d["created_at"], reverse=True)


def delete_for_user(db: Database, user_id: str) -> int:
    return db.exclusions.delete_many({"user_id": user_id}).deleted_count


def rename_keys(db: Database, user_id: str, renamed: dict[str, str]) -> int:
    """Exclusions named by Graph ids (a series' master, a meeting without iCalUId) follow their new ids."""
    changed = 0
    for doc in list(db.exclusions.find({"user_id": user_id, "key": {"$in": sorted(renamed)}})):
        try:
            changed += db.exclusions.update_one({"_id": doc["_id"]},
                                                {"$set": {"key": renamed[doc["key"]]}}).modified_count
        except DuplicateKeyError:
            db.exclusions.delete_one({"_id": doc["_id"]})   # already excluded under the new id
    return changed


def keys_of(db: Database, user_id: str) -> set[str]:
    return {doc["key"] for doc in db.exclusions.find({"user_id": user_id}, {"key": 1})}


def for_users(db: Database, user_ids: Iterable[str]) -> dict[str, Excluded]:
    """What each of many users keeps out of insights, in one query of the ``(user_id, kind, key)`` index."""
    wanted = sorted(set(user_ids))
    found: dict[str, dict[str, set[str]]] = {u: {MEETING: set(), SERIES: set()} for u in wanted}
    for doc in db.exclusions.find({"user_id": {"$in": wanted}}, {"user_id": 1, "kind": 1, "key": 1}):
        found[doc["user_id"]].setdefault(doc["kind"], set()).add(doc["key"])
    return {u: Excluded(frozenset(k[MEETING]), frozenset(k[SERIES])) for u, k in found.items()}
