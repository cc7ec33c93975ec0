"""Stored calendar events: only the fields the product uses, keyed by (user_id, graph_id).

The write path (delta pages or rich notifications → upserts and deletions) is ``apply_changes``: a
whitelist transform drops bodies and everything else not listed in docs/design.md before any write, an
older ``lastModifiedDateTime`` never overwrites a newer one, and replays are harmless. Readers use the
query functions at the bottom.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from service import timezones
from service.store import as_utc

log = logging.getLogger(__name__)

TOMBSTONE_DAYS = 3      # long enough to outlive any replay or delayed rich notification
MAX_ID_LENGTH = 512     # Graph ids are ~150 characters; anything longer is not an id
MAX_TEXT = 1_000        # subject and names are capped; Graph allows 255 for a subject

INDEXES = {
    "events": [
        IndexModel([("user_id", ASCENDING), ("graph_id", ASCENDING)], unique=True, name="user_graph_id"),
        IndexModel([("user_id", ASCENDING), ("start", ASCENDING)], name="user_start"),
        IndexModel([("attendees.email", ASCENDING)], name="attendee_email"),
    ],
    # What we deleted and the version it had, so a replayed older upsert cannot bring it back.
    "event_tombstones": [
        IndexModel([("user_id", ASCENDING), ("graph_id", ASCENDING)], unique=True, name="user_graph_id"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at"),
    ],
}

# Every field a stored event may have; tests scan stored documents against this set.
STORED_FIELDS = frozenset({
    "_id", "user_id", "graph_id", "subject", "start", "end", "start_tz", "end_tz", "is_all_day", "organizer",
    "attendees", "is_cancelled", "show_as", "is_online_meeting", "type", "series_master_id", "ical_uid",
    "last_modified", "change_key", "stored_at",
})


@dataclass
class ApplyResult:
    upserted: int = 0
    deleted: int = 0
    stale: int = 0              # older than (or the same version as) what is stored: skipped
    invalid: int = 0            # not an event we can use (no id, junk): skipped
    lag_seconds: float | None = None   # largest (stored_at - lastModifiedDateTime) among applied upserts
    seen: set[str] = field(default_factory=set)   # ids present (not removed) in the items

    def add(self, other: ApplyResult) -> None:
        self.upserted += other.upserted
        self.deleted += other.deleted
        self.stale += other.stale
        self.invalid += other.invalid
        self.seen |= other.seen
        if other.lag_seconds is not None:
            self.lag_seconds = max(self.lag_seconds or 0.0, other.lag_seconds)


# ------------------------------------------------------------------ the whitelist transform

def parse_graph_time(value: object) -> datetime | None:
    """A Graph DateTimeOffset (``...0000000Z``) as aware UTC, truncated to what MongoDB keeps (ms)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def _zone(name: str) -> ZoneInfo:
    """Windows or IANA zone names (Graph sends either); unknown names read as UTC."""
    return timezones.zone(name)


def parse_date_time_zone(value: object) -> datetime | None:
    """Graph's ``dateTimeTimeZone`` (wall time + zone name) as aware UTC; junk gives None."""
    if not isinstance(value, dict):
        return None
    wall = parse_graph_time(value.get("dateTime"))
    zone_name = value.get("timeZone")
    if wall is None or not isinstance(zone_name, str) or zone_name.strip().upper() in ("", "UTC"):
        return wall
    tz = _zone(zone_name.strip()[:64])
    return wall if tz is None else wall.replace(tzinfo=None).replace(tzinfo=tz).astimezone(UTC)


def _text(value: object) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _email(value: object) -> str | None:
    return value.strip().lower()[:320] if isinstance(value, str) and value.strip() else None


def _recipient(value: object) -> dict:
    address = value.get("emailAddress") if isinstance(value, dict) else None
    address = address if isinstance(address, dict) else {}
    return {"name": _text(address.get("name")), "email": _email(address.get("address"))}


def _attendee(value: object) -> dict:
    status = value.get("status") if isinstance(value, dict) else None
    status = status if isinstance(status, dict) else {}
    kind = value.get("type") if isinstance(value, dict) else None
    return _recipient(value) | {"type": _text(kind), "response": _text(status.get("response"))}


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def to_document(item: dict) -> dict:
    """Keep only the listed fields of a Graph event, renamed; fields absent from ``item`` stay absent.

    Delta may send "at least the updated properties", so a partial item must not blank what is stored.
    """
    doc: dict = {}
    simple = {
        "subject": ("subject", _text), "isAllDay": ("is_all_day", _bool), "isCancelled": ("is_cancelled", _bool),
        "showAs": ("show_as", _text), "isOnlineMeeting": ("is_online_meeting", _bool), "type": ("type", _text),
        "seriesMasterId": ("series_master_id", _text), "iCalUId": ("ical_uid", _text),
        "changeKey": ("change_key", _text), "lastModifiedDateTime": ("last_modified", parse_graph_time),
    }
    for source, (target, convert) in simple.items():
        if source in item:
            doc[target] = convert(item[source])
    for edge in ("start", "end"):
        if edge in item:
            doc[edge] = parse_date_time_zone(item[edge])
            given = item[edge].get("timeZone") if isinstance(item[edge], dict) else None
            original = item.get(f"original{edge.title()}TimeZone")
            doc[f"{edge}_tz"] = _text(original) or _text(given)
    if "organizer" in item:
        doc["organizer"] = _recipient(item["organizer"])
    if "attendees" in item:
        attendees = item["attendees"] if isinstance(item["attendees"], list) else []
        doc["attendees"] = [_attendee(a) for a in attendees[:500] if isinstance(a, dict)]
    return doc


def _graph_id(item: object) -> str | None:
    graph_id = item.get("id") if isinstance(item, dict) else None
    return graph_id if isinstance(graph_id, str) and 0 < len(graph_id) <= MAX_ID_LENGTH else None


# ------------------------------------------------------------------ writes

def apply_changes(db: Database, user_id: str, graph_items: Iterable[object], now: datetime) -> ApplyResult:
    """Apply Graph event items in order: ``@removed`` deletes, anything else upserts if not older."""
    result = ApplyResult()
    items = [(item, _graph_id(item)) for item in graph_items]
    tombstones = _tombstones(db, user_id, [graph_id for item, graph_id in items if graph_id])
    for item, graph_id in items:
        if graph_id is None:
            result.invalid += 1
        elif "@removed" in item:
            result.deleted += _delete(db, user_id, graph_id, now, tombstones)
        else:
            result.seen.add(graph_id)
            _upsert(db, user_id, graph_id, to_document(item), now, tombstones, result)
    return result


def _tombstones(db: Database, user_id: str, graph_ids: list[str]) -> dict[str, datetime | None]:
    found = db.event_tombstones.find({"user_id": user_id, "graph_id": {"$in": graph_ids}})
    return {t["graph_id"]: as_utc(t.get("last_modified")) for t in found}


def _upsert(db: Database, user_id: str, graph_id: str, doc: dict, now: datetime,
            tombstones: dict, result: ApplyResult) -> None:
    modified = doc.get("last_modified")
    deleted_version = tombstones.get(graph_id)
    if deleted_version is not None and (modified is None or modified <= deleted_version):
        result.stale += 1   # a replay of a version we already deleted
        return
    guard: dict = {"user_id": user_id, "graph_id": graph_id}
    if modified is not None:
        guard["$or"] = [
            {"last_modified": {"$lt": modified}},
            {"last_modified": None},
            {"last_modified": modified, "change_key": {"$ne": doc.get("change_key")}},
        ]
    try:
        db.events.update_one(guard, {"$set": {**doc, "stored_at": now}}, upsert=True)
    except DuplicateKeyError:   # the guard failed on an existing document: ours is not newer
        result.stale += 1
        return
    if graph_id in tombstones:
        db.event_tombstones.delete_one({"user_id": user_id, "graph_id": graph_id})
    result.upserted += 1
    if modified is not None:
        lag = max((now - modified).total_seconds(), 0.0)
        result.lag_seconds = max(result.lag_seconds or 0.0, lag)


def _delete(db: Database, user_id: str, graph_id: str, now: datetime, tombstones: dict) -> int:
    removed = db.events.find_one_and_delete({"user_id": user_id, "graph_id": graph_id}, {"last_modified": 1})
    if removed is not None:
        last_modified = as_utc(removed.get("last_modified"))
        tombstones[graph_id] = last_modified
        db.event_tombstones.update_one(
            {"user_id": user_id, "graph_id": graph_id},
            {"$set": {"last_modified": last_modified, "expires_at": now + timedelta(days=TOMBSTONE_DAYS)}},
            upsert=True,
        )
    return 1 if removed is not None else 0


def delete_missing(db: Database, user_id: str, present: set[str], before: datetime) -> int:
    """After a full resync: delete the user's events Graph no longer lists (stored before the resync began)."""
    stale = [
        doc["graph_id"]
        for doc in db.events.find({"user_id": user_id, "stored_at": {"$lt": before}}, {"graph_id": 1})
        if doc["graph_id"] not in present
    ]
    if stale:
        db.events.delete_many({"user_id": user_id, "graph_id": {"$in": stale}})
    return len(stale)


def delete_for_user(db: Database, user_id: str) -> int:
    """Forget every stored event of a user (disconnect)."""
    db.event_tombstones.delete_many({"user_id": user_id})
    return db.events.delete_many({"user_id": user_id}).deleted_count


def most_common_organizer_zone(db: Database, user_id: str, email: str) -> str | None:
    """The originalStartTimeZone the user's own meetings use most (None if they organize none)."""
    pipeline = [
        {"$match": {"user_id": user_id, "organizer.email": email, "start_tz": {"$type": "string"}}},
        {"$group": {"_id": "$start_tz", "count": {"$sum": 1}}},
        {"$sort": {"count": -1, "_id": 1}},
    ]
    for row in db.events.aggregate(pipeline):
        if row["_id"] and not row["_id"].lower().startswith("tzone://microsoft/custom"):
            return row["_id"]
    return None


# ------------------------------------------------------------------ reads

def get(db: Database, user_id: str, graph_id: str) -> dict | None:
    return db.events.find_one({"user_id": user_id, "graph_id": graph_id})


def in_window(db: Database, user_id: str, start: datetime, end: datetime) -> list[dict]:
    """A user's events overlapping [start, end), earliest first."""
    return list(
        db.events.find({"user_id": user_id, "start": {"$lt": end}, "end": {"$gt": start}}).sort("start", ASCENDING)
    )


def by_key(db: Database, key: str) -> dict | None:
    """An event by its stored ``_id`` (the key in dashboard URLs); None for anything malformed."""
    if not isinstance(key, str) or len(key) > 200:
        return None
    try:
        return db.events.find_one({"_id": ObjectId(key)})
    except (InvalidId, TypeError):
        return db.events.find_one({"_id": key})


def for_user(db: Database, user_id: str) -> list[dict]:
    return list(db.events.find({"user_id": user_id}))


def count_holding(db: Database, fields: Iterable[str]) -> int:
    """How many stored events hold any of ``fields`` (the proof that bodies never reach the store)."""
    return db.events.count_documents({"$or": [{name: {"$exists": True}} for name in fields]})
