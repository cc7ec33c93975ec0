"""A user's calendars: what Graph lists for them, whether calsync reads each one, and each one's delta cursor.

Every enabled calendar but the default one is also ``polled``: a copy of a calendar someone shared sends no
notifications to a delegated subscription, and whether the mailbox subscription covers the user's other
calendars is documented ("all events in a user's mailbox") but reported otherwise, so they are read every
few minutes as well (``service.sync.sweeps.polled_calendars``).

``{_id, user_id, calendar_id (Graph's), name, owner_email, is_default, is_own, enabled, enabled_by,
delta_link, window_start, window_end, baseline_at, series_recheck, last_sync_at, last_result, last_error, error_count,
created_at, updated_at}``, unique on (user_id, calendar_id). The delta link is written only after the last
page of a round was applied, so a crash mid-round replays from the old one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.database import Database

from service.store import utcnow
from service.store.records import Calendar

BY_USER_AND_CALENDAR = "user_calendar"
POLLED = "polled_last_sync"

INDEXES = {
    "calendars": [
        IndexModel([("user_id", ASCENDING), ("calendar_id", ASCENDING)], unique=True, name=BY_USER_AND_CALENDAR),
        IndexModel([("window_start", ASCENDING)], name="window_start"),   # the daily window roll
        # enabled calendars other than the default, by when they were last read
        IndexModel([("polled", ASCENDING), ("last_sync_at", ASCENDING)], name=POLLED),
    ],
}


def for_user(db: Database, user_id: str) -> list[Calendar]:
    """Every calendar we know of for the user, default first, then by name."""
    found = [Calendar.from_doc(d) for d in db.calendars.find({"user_id": user_id})]
    return sorted(found, key=lambda c: (not c.is_default, c.name.lower(), c.calendar_id))


def enabled_for_user(db: Database, user_id: str) -> list[Calendar]:
    return [c for c in for_user(db, user_id) if c.enabled]


def get(db: Database, user_id: str, calendar_id: str) -> Calendar | None:
    doc = db.calendars.find_one({"user_id": user_id, "calendar_id": calendar_id})
    return Calendar.from_doc(doc) if doc else None


def by_key(db: Database, user_id: str, key: str) -> Calendar | None:
    """A user's calendar by its stored id (what the settings form sends), None for anything else."""
    try:
        doc = db.calendars.find_one({"_id": ObjectId(key), "user_id": user_id})
    except (InvalidId, TypeError):
        return None
    return Calendar.from_doc(doc) if doc else None


def upsert_listed(db: Database, user_id: str, listed: list[dict], now: datetime | None = None) -> list[Calendar]:
    """Record the calendars Graph lists (``{calendar_id, name, owner_email, is_default, is_own}``); a new one
    is read by default if it is the user's own. Returns the calendars that were new."""
    return record_listed(db, user_id, listed, for_user(db, user_id), now)[0]


def record_listed(db: Database, user_id: str, listed: list[dict], known: list[Calendar],
                  now: datetime | None = None) -> tuple[list[Calendar], list[Calendar]]:
    """``upsert_listed`` for a caller that has just read the user's calendars (``known``): one bulk write of
    the listed ones and one read of the result. Returns (the calendars that were new, every calendar now
    stored for the user, ``for_user``'s order), so a sync round reads the list once after writing it."""
    now = now or utcnow()
    known_ids = {c.calendar_id for c in known}
    writes = []
    for entry in listed:
        fields = {k: entry[k] for k in ("name", "owner_email", "is_default", "is_own")}
        enabled = bool(entry["is_own"])
        on_insert = {"enabled": enabled, "enabled_by": "default", "created_at": now}
        if enabled and not entry["is_default"]:
            on_insert["polled"] = True
        writes.append(UpdateOne({"user_id": user_id, "calendar_id": entry["calendar_id"]},
                                {"$set": {**fields, "updated_at": now}, "$setOnInsert": on_insert}, upsert=True))
    added: set[str] = set()
    if writes:
        upserted = db.calendars.bulk_write(writes, ordered=True).upserted_ids
        added = {listed[index]["calendar_id"] for index in upserted} - known_ids
    stored = for_user(db, user_id)
    return [c for c in stored if c.calendar_id in added], stored


def remove(db: Database, user_id: str, calendar_id: str) -> bool:
    """Forget a calendar (gone from Graph, or its user's data deleted)."""
    return db.calendars.delete_one({"user_id": user_id, "calendar_id": calendar_id}).deleted_count == 1


def delete_for_user(db: Database, user_id: str) -> int:
    return db.calendars.delete_many({"user_id": user_id}).deleted_count


def set_enabled(db: Database, user_id: str, calendar_id: str, enabled: bool) -> bool:
    """The user turned a calendar on or off; a calendar turned off forgets its cursor. True if it changed.
    An enabled calendar other than the default one is ``polled``."""
    calendar = get(db, user_id, calendar_id)
    if calendar is None or calendar.enabled == enabled:
        return False
    fields: dict = {"enabled": enabled, "enabled_by": "user", "updated_at": utcnow()}
    unset = {} if enabled else {"delta_link": "", "window_start": "", "window_end": "", "baseline_at": "",
                                "last_sync_at": ""}
    if enabled and not calendar.is_default:
        fields["polled"] = True
    else:
        unset["polled"] = ""
    if enabled:
        unset["purge_pending"] = ""
    else:
        fields["purge_pending"] = True   # a round running now may still write some: the next sync deletes them
    update: dict = {"$set": fields} | ({"$unset": unset} if unset else {})
    result = db.calendars.update_one({"user_id": user_id, "calendar_id": calendar_id, "enabled": not enabled},
                                     update)
    return result.modified_count == 1


def save_cursor(db: Database, user_id: str, calendar_id: str, delta_link: str, window_start: datetime,
                window_end: datetime, baseline_at: datetime, series_recheck: Iterable[str] = ()) -> None:
    """Record a completed round: the cursor to continue from, the window it covers and the series to check
    again after the next round (``service.sync.series``), not for a calendar turned off meanwhile."""
    db.calendars.update_one(*_cursor_update(user_id, calendar_id, delta_link, window_start, window_end, baseline_at,
                                            series_recheck))


def _cursor_update(user_id: str, calendar_id: str, delta_link: str, window_start: datetime, window_end: datetime,
                   baseline_at: datetime, series_recheck: Iterable[str] = ()) -> tuple[dict, dict]:
    return ({"user_id": user_id, "calendar_id": calendar_id, "enabled": True},
            {"$set": {"delta_link": delta_link, "window_start": window_start, "window_end": window_end,
                      "baseline_at": baseline_at, "series_recheck": sorted(series_recheck)}})


def record_rounds(db: Database, user_id: str,
                  done: list[tuple[str, str, tuple | None, Iterable[str], datetime]], save_cursors: bool) -> None:
    """The end of a sync round over several calendars, in one round trip: each calendar's outcome
    (``record_result``) and, with ``save_cursors``, its cursor (``save_cursor``). ``done``: (calendar id, result
    label, cursor as ``save_cursor`` takes it or None, series to check again, when its round ended) per calendar
    read."""
    writes = []
    for calendar_id, label, cursor, recheck, ended in done:
        writes.append(UpdateOne(*_result_update(user_id, calendar_id, ended, label)))
        if save_cursors and cursor is not None:
            writes.append(UpdateOne(*_cursor_update(user_id, calendar_id, *cursor, recheck)))
    if writes:
        db.calendars.bulk_write(writes, ordered=True)


def clear_cursor(db: Database, user_id: str, calendar_id: str | None = None) -> int:
    """Forget the cursor of one calendar (or all of a user's): the next round is a full resync."""
    query = {"user_id": user_id} | ({"calendar_id": calendar_id} if calendar_id else {})
    return db.calendars.update_many(
        query, {"$unset": {"delta_link": "", "window_start": "", "window_end": "", "baseline_at": ""}}
    ).modified_count


def purged(db: Database, user_id: str, calendar_id: str) -> None:
    """The events of a calendar turned off are gone; nothing more to delete."""
    db.calendars.update_one({"user_id": user_id, "calendar_id": calendar_id, "enabled": False},
                            {"$unset": {"purge_pending": ""}})


def record_result(db: Database, user_id: str, calendar_id: str, now: datetime, result: str,
                  error: str | None = None) -> None:
    """The outcome of a round on one calendar, for operators (``error`` is a short code, never a body)."""
    db.calendars.update_one(*_result_update(user_id, calendar_id, now, result, error))


def _result_update(user_id: str, calendar_id: str, now: datetime, result: str,
                   error: str | None = None) -> tuple[dict, dict]:
    fields = {"last_result": result, "last_error": error[:200] if error else None, "updated_at": now}
    update: dict = {"$set": fields}
    if error:
        update["$inc"] = {"error_count": 1}
    else:
        fields.update(last_sync_at=now, error_count=0)
    return {"user_id": user_id, "calendar_id": calendar_id}, update


def polled_before(db: Database, cutoff: datetime) -> list[str]:
    """Ids of users with a polled calendar last read before ``cutoff``."""
    found = db.calendars.find({"polled": True, "last_sync_at": {"$lt": cutoff}}, {"user_id": 1}).hint(POLLED)
    return sorted({c["user_id"] for c in found})


def retire_user_cursors(db: Database) -> int:
    """Drop the one-per-user cursors of before calendars were known (``sync_state``): each user's next round
    lists their calendars, files the events already stored under the default one, and resyncs each calendar
    from scratch (idempotent upserts, so nothing is lost). Returns how many cursors were dropped."""
    count = db.sync_state.estimated_document_count()
    db.sync_state.drop()
    return count


def windows_starting_before(db: Database, start: datetime) -> list[str]:
    """Ids of users with an enabled calendar whose window starts before ``start`` (the daily roll)."""
    found = db.calendars.find({"window_start": {"$lt": start}}, {"user_id": 1}).hint("window_start")
    return sorted({c["user_id"] for c in found})
