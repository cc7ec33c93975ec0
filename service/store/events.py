"""Stored calendar events: only the fields the product uses, keyed by (user_id, graph_id).

The write path (delta pages or rich notifications → upserts and deletions) is ``apply_changes``: a
whitelist transform drops bodies and everything else not listed in docs/design.md before any write, an
older ``lastModifiedDateTime`` never overwrites a newer one, and replays are harmless. Readers use the
query functions at the bottom.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import wraps
from zoneinfo import ZoneInfo

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from service import metrics, timezones
from service.store import as_utc
from service.store import weeks as week_summaries

log = logging.getLogger(__name__)

TOMBSTONE_DAYS = 3      # long enough to outlive any replay or delayed rich notification
MAX_ID_LENGTH = 512     # Graph ids are ~150 characters; anything longer is not an id
MAX_TEXT = 1_000        # subject and names are capped; Graph allows 255 for a subject
MAX_ATTENDEES = 500     # "The maximum number of attendees included in an event ... is 500" (event resource)
DUPLICATE_KEY = 11000

# Range and sort queries name the index they rely on (``hint``): a missing index should fail loudly rather
# than turn into a collection scan. Lookups by an equality on ``user_id`` (and ``graph_id``) are left to the
# planner, as in ``service.store.ops``: every index here that could answer them leads with ``user_id``, and
# both MongoDB and SecantusDB pick ``user_graph_id`` (tests/store/test_query_plans.py). SecantusDB answers a
# hinted query by walking the whole index, so the sync's per-round lookups cost O(all events) there (135 ms
# at 10,000 events against 1.8 ms unhinted), which made the wire server the limit of bench P3.
BY_USER_AND_ID = "user_graph_id"
BY_USER_AND_START = "user_start"
BY_USER_AND_ICAL_UID = "user_ical_uid"
BY_END = "end"
BY_START = "start"

INDEXES = {
    "events": [
        IndexModel([("user_id", ASCENDING), ("graph_id", ASCENDING)], unique=True, name=BY_USER_AND_ID),
        IndexModel([("user_id", ASCENDING), ("start", ASCENDING)], name=BY_USER_AND_START),
        IndexModel([("user_id", ASCENDING), ("ical_uid", ASCENDING)], name=BY_USER_AND_ICAL_UID),  # duplicates
        IndexModel([("end", ASCENDING)], name=BY_END),   # retention
        IndexModel([("start", ASCENDING)], name=BY_START),   # the prep tick: every user's meetings starting soon
    ],
    # What we deleted and the version it had, so a replayed older upsert cannot bring it back.
    "event_tombstones": [
        IndexModel([("user_id", ASCENDING), ("graph_id", ASCENDING)], unique=True, name=BY_USER_AND_ID),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at"),
    ],
}
RETIRED_INDEXES = {"events": ["attendee_email"]}   # nothing queries attendees by email

# Every field a stored event may have; tests scan stored documents against this set.
STORED_FIELDS = frozenset({
    "_id", "user_id", "graph_id", "calendar_id", "subject", "sensitivity", "start", "end", "start_tz", "end_tz",
    "is_all_day", "organizer", "attendees", "is_cancelled", "show_as", "is_online_meeting", "type",
    "series_master_id", "ical_uid", "last_modified", "change_key", "stored_at", "response", "hide_attendees",
    "former_graph_id",
})
# Meetings the user marked private: stored without their subject, shown as "Private meeting".
PRIVATE = frozenset({"private", "confidential"})


@dataclass
class MeetingChanges:
    """Which stored meetings (Graph ids) a round created, updated and deleted, coalesced in the order the
    writes happened: created then deleted is nothing, updated then deleted is deleted, created then updated
    stays created. What ``meetings.changed`` (service.outbound) reports."""

    created: set[str] = field(default_factory=set)
    updated: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)

    def create(self, graph_id: str) -> None:
        if graph_id in self.deleted:          # deleted, then back: the receiver's copy is out of date
            self.deleted.discard(graph_id)
            self.updated.add(graph_id)
        else:
            self.created.add(graph_id)

    def update(self, graph_id: str) -> None:
        if graph_id not in self.created:
            self.updated.add(graph_id)

    def delete(self, graph_id: str) -> None:
        if graph_id in self.created:
            self.created.discard(graph_id)    # never seen by anyone: nothing happened
            return
        self.updated.discard(graph_id)
        self.deleted.add(graph_id)

    def add(self, other: MeetingChanges) -> None:
        for graph_id in sorted(other.deleted):
            self.delete(graph_id)
        for graph_id in sorted(other.created):
            self.create(graph_id)
        for graph_id in sorted(other.updated):
            self.update(graph_id)

    def __bool__(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


@dataclass
class ApplyResult:
    upserted: int = 0
    deleted: int = 0
    stale: int = 0              # older than (or the same version as) what is stored: skipped
    invalid: int = 0            # not an event we can use (no id, junk): skipped
    lag_seconds: float | None = None   # largest (stored_at - lastModifiedDateTime) among applied upserts
    seen: set[str] = field(default_factory=set)   # ids present (not removed) in the items
    changes: MeetingChanges = field(default_factory=MeetingChanges)

    def add(self, other: ApplyResult) -> None:
        self.changes.add(other.changes)
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
        "sensitivity": ("sensitivity", _text), "hideAttendees": ("hide_attendees", _bool),
    }
    for source, (target, convert) in simple.items():
        if source in item:
            doc[target] = convert(item[source])
    if doc.get("sensitivity") in PRIVATE and "subject" in doc:
        doc["subject"] = None   # a private meeting's subject never reaches the store
    for edge in ("start", "end"):
        if edge in item:
            doc[edge] = parse_date_time_zone(item[edge])
            given = item[edge].get("timeZone") if isinstance(item[edge], dict) else None
            original = item.get(f"original{edge.title()}TimeZone")
            doc[f"{edge}_tz"] = _text(original) or _text(given)
    if "responseStatus" in item:
        status = item["responseStatus"] if isinstance(item["responseStatus"], dict) else {}
        doc["response"] = _text(status.get("response"))   # the mailbox owner's own answer (declined…)
    if "organizer" in item:
        doc["organizer"] = _recipient(item["organizer"])
    if "attendees" in item:
        attendees = item["attendees"] if isinstance(item["attendees"], list) else []
        doc["attendees"] = [_attendee(a) for a in attendees[:MAX_ATTENDEES] if isinstance(a, dict)]
    return doc


def _graph_id(item: object) -> str | None:
    graph_id = item.get("id") if isinstance(item, dict) else None
    return graph_id if isinstance(graph_id, str) and 0 < len(graph_id) <= MAX_ID_LENGTH else None


# ------------------------------------------------------------------ the events version (weekly summaries)

# Every write below ends with ``_written``: the user's events version is bumped once the write is done, which
# drops their stored weekly summaries (``service.store.weeks``). Inside ``one_version_bump`` (a sync round, a
# batch of rich notifications) a user is bumped twice whatever the round writes: after its first write of theirs,
# marked "writing" (no summary is stored meanwhile, nor ever, should the worker die before the end), and at its
# end, after its last write; none when it wrote nothing.
_pending: ContextVar[tuple[Database, set[str]] | None] = ContextVar("events_version_pending", default=None)


@contextmanager
def one_version_bump(db: Database) -> Iterator[None]:
    """Bump the events version of every user written inside after their first write (marked "writing") and once
    at the end (also when it fails half-way: what was written stays written). Nested, the outermost one bumps."""
    if _pending.get() is not None:
        yield
        return
    touched: set[str] = set()
    token = _pending.set((db, touched))
    try:
        yield
    finally:
        _pending.reset(token)
        week_summaries.bump(db, touched)


def _bumps_once(write):
    """A write function of many writes (``db`` first) bumps each user's version once, at its end."""
    @wraps(write)
    def wrapped(db: Database, *args, **kwargs):
        with one_version_bump(db):
            return write(db, *args, **kwargs)
    return wrapped


def _written(db: Database, user_ids: Iterable[str]) -> None:
    pending = _pending.get()
    if pending is not None and pending[0] is db:
        first = set(user_ids) - pending[1]
        week_summaries.bump(db, first, writing=True)
        pending[1].update(first)
    else:
        week_summaries.bump(db, user_ids)


# ------------------------------------------------------------------ writes

Removals = dict[str, tuple[str | None, bool]]   # graph id -> (calendar it left, write a tombstone)


@_bumps_once
def apply_changes(db: Database, user_id: str, graph_items: Iterable[object], now: datetime,
                  calendar_id: str | None = None, removals: Removals | None = None) -> ApplyResult:
    """Apply Graph event items in order: ``@removed`` deletes, anything else upserts if not older.

    A run of upserts costs a few round trips whatever its length (one read of the stored versions, one
    ``insert_many``, one ``bulk_write``); a removal of an id waiting in the run flushes it first, so the
    outcome is that of applying the items one by one. Safe against another process writing the same
    events at the same time (see ``_flush``).

    With ``removals`` (a round over several calendars), an ``@removed`` is only noted there: an event moved
    to another calendar keeps its immutable id, and that calendar's round may store it under its new calendar
    (cancelling the note) before or after this one says it left; ``apply_removals`` then deletes what is
    still stored under the calendar it left.
    """
    result = ApplyResult()
    pending: dict[str, dict] = {}
    for item in graph_items:
        graph_id = _graph_id(item)
        if graph_id is None:
            result.invalid += 1
            _log_skipped(user_id, item)
        elif "@removed" in item:
            if graph_id in pending:
                _forget_applied(removals, _flush(db, user_id, pending, now, result))
            if removals is not None:
                removals[graph_id] = (calendar_id, True)
                continue
            removed = _delete(db, user_id, graph_id, now)
            result.deleted += removed
            if removed:
                result.changes.delete(graph_id)
        elif not _is_event(item):
            result.invalid += 1
            _log_skipped(user_id, item)
        elif not _usable_times(item):
            result.invalid += 1
            log.warning("skipped event %s of user %s: its start or end is not a dateTimeTimeZone", graph_id, user_id)
        else:
            result.seen.add(graph_id)
            _log_trimmed(user_id, graph_id, item)
            doc = to_document(item)
            if calendar_id is not None:
                doc["calendar_id"] = calendar_id
            kept = pending.get(graph_id)
            if kept is not None and not _is_newer(doc, kept):
                result.stale += 1   # the same event twice in one page: the newer one wins
                continue
            if kept is not None:
                result.stale += 1
            pending[graph_id] = doc
    _forget_applied(removals, _flush(db, user_id, pending, now, result))
    return result


EVENT_TYPES = frozenset({"#microsoft.graph.event"})


def _is_event(item: dict) -> bool:
    """An item of a delta page is an event unless it says it is something else (Graph names the type in
    ``@odata.type`` on delta entries; rich notification payloads may omit it)."""
    kind = item.get("@odata.type")
    return kind is None or (isinstance(kind, str) and kind.lower() in EVENT_TYPES)


def _usable_times(item: dict) -> bool:
    """A start or end that is sent must be readable (null, or something else where Graph sends a
    dateTimeTimeZone, would store a meeting at no time)."""
    return all(parse_date_time_zone(item[edge]) is not None for edge in ("start", "end") if edge in item)


def _log_trimmed(user_id: str, graph_id: str, item: dict) -> None:
    """Say what the whitelist transform cuts from an oversized event (Graph allows 500 attendees)."""
    attendees = item.get("attendees")
    if isinstance(attendees, list) and len(attendees) > MAX_ATTENDEES:
        log.warning("event %s of user %s lists %d attendees; kept the first %d", graph_id, user_id, len(attendees),
                    MAX_ATTENDEES)
    subject = item.get("subject")
    if isinstance(subject, str) and len(subject) > MAX_TEXT:
        log.warning("event %s of user %s has a %d-character subject; kept %d", graph_id, user_id, len(subject),
                    MAX_TEXT)


def _log_skipped(user_id: str, item: object) -> None:
    kind = item.get("@odata.type") if isinstance(item, dict) else type(item).__name__
    log.warning("skipped a Graph item for user %s that is not a usable event (type %r)", user_id,
                str(kind)[:80] if kind is not None else None)


def _forget_applied(removals: Removals | None, applied: Iterable[str]) -> None:
    """An event written after a calendar said it left (it moved here) is no longer to be removed."""
    if removals is not None:
        for graph_id in applied:
            removals.pop(graph_id, None)


@_bumps_once
def apply_removals(db: Database, user_id: str, removals: Removals, now: datetime,
                   changes: MeetingChanges | None = None) -> int:
    """Delete each noted event still stored under the calendar it left (or under none); returns how many."""
    removed = 0
    for graph_id, (calendar_id, tombstone) in sorted(removals.items()):
        if _delete(db, user_id, graph_id, now, calendar_id, tombstone):
            removed += 1
            if changes is not None:
                changes.delete(graph_id)
    removals.clear()
    return removed


def _is_newer(doc: dict, stored: dict) -> bool:
    """Whether ``doc`` is a later version than the stored event (an unversioned item always applies)."""
    modified, current = doc.get("last_modified"), as_utc(stored.get("last_modified"))
    if modified is None or current is None:
        return True
    return modified > current or (modified == current and doc.get("change_key") != stored.get("change_key"))


class WriteConflict(Exception):  # noqa: N818 - a state, not a bug
    """Other writers kept changing the same events; the job is retried rather than guessing."""


def _flush(db: Database, user_id: str, pending: dict[str, dict], now: datetime, result: ApplyResult) -> list[str]:
    """Write the pending documents: read the stored versions once, then insert what is new and update what
    is newer, each write conditional on the version read (compare-and-set).

    Every filter is an equality on indexed fields, so each write is an index lookup on any server. Another
    writer changing an event between our read and our write makes that write miss (an update matches
    nothing, an insert meets a duplicate key); those events are read again and decided again. An insert
    that raced a deletion is undone after checking the tombstones again (deletions write theirs first).
    """
    if not pending:
        return []
    batch = dict(pending)
    pending.clear()
    deleted_versions = _tombstones(db, user_id, list(batch), now)
    for graph_id in [g for g in batch if _buried(batch[g], deleted_versions.get(g, _ALIVE))]:
        del batch[graph_id]
        result.stale += 1   # a replay of a version we already deleted
    applied: dict[str, dict] = {}
    inserted: dict[str, dict] = {}
    for _ in range(MAX_WRITE_ATTEMPTS):
        if not batch:
            break
        stored = {d["graph_id"]: d for d in db.events.find(
            {"user_id": user_id, "graph_id": {"$in": list(batch)}}, VERSION_FIELDS)}
        new = [g for g in batch if g not in stored]
        newer = [g for g in batch if g in stored and _is_newer(batch[g], stored[g])]
        for graph_id in [g for g in batch if g in stored and g not in newer]:
            del batch[graph_id]
            result.stale += 1
        done = _insert(db, user_id, {g: batch[g] for g in new}, now)
        inserted.update({g: batch[g] for g in done})
        done += _compare_and_set(db, user_id, {g: (batch[g], stored[g]) for g in newer}, now)
        for graph_id in done:
            applied[graph_id] = batch.pop(graph_id)
    if batch:
        raise WriteConflict(f"{len(batch)} event(s) of user {user_id} kept changing under us")
    undone = _undo_buried_inserts(db, user_id, inserted, now)
    result.stale += len(undone)
    result.upserted += len(applied) - len(undone)
    for graph_id in applied:
        if graph_id in inserted and graph_id not in undone:
            result.changes.create(graph_id)
        elif graph_id not in inserted:
            result.changes.update(graph_id)
    revived = [g for g in applied if g in deleted_versions]
    if revived:
        db.event_tombstones.delete_many({"user_id": user_id, "graph_id": {"$in": revived}})
    for doc in applied.values():
        if doc.get("last_modified") is not None:
            lag = max((now - doc["last_modified"]).total_seconds(), 0.0)
            result.lag_seconds = max(result.lag_seconds or 0.0, lag)
            metrics.STORED_LAG.observe(lag)
    return [g for g in applied if g not in undone]


MAX_WRITE_ATTEMPTS = 5
VERSION_FIELDS = {"graph_id": 1, "last_modified": 1, "change_key": 1, "sensitivity": 1}


def _insert(db: Database, user_id: str, docs: dict[str, dict], now: datetime) -> list[str]:
    """Insert events not stored yet; returns the ids inserted (a duplicate key: someone else just did)."""
    if not docs:
        return []
    ids = list(docs)
    rows = [{**docs[g], "user_id": user_id, "graph_id": g, "stored_at": now} for g in ids]
    try:
        db.events.insert_many(rows, ordered=False)
        return ids
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        failed = {e["index"] for e in errors}
        return [g for n, g in enumerate(ids) if n not in failed]
    finally:
        _written(db, [user_id])


def _compare_and_set(db: Database, user_id: str, docs: dict[str, tuple[dict, dict]], now: datetime) -> list[str]:
    """Update each event only if it still has the version we read; returns the ids updated."""
    if not docs:
        return []
    operations = [
        UpdateOne({"user_id": user_id, "graph_id": g, "last_modified": stored.get("last_modified"),
                   "change_key": stored.get("change_key")}, {"$set": {**_kept_private(doc, stored), "stored_at": now}})
        for g, (doc, stored) in docs.items()
    ]
    try:
        matched = db.events.bulk_write(operations, ordered=False).matched_count
    finally:
        _written(db, [user_id])
    if matched == len(operations):
        return list(docs)
    # Some missed: whatever now holds our version was written by us (or is identical); retry the rest.
    now_stored = {d["graph_id"]: d for d in db.events.find(
        {"user_id": user_id, "graph_id": {"$in": list(docs)}}, VERSION_FIELDS)}
    return [g for g, (doc, _) in docs.items() if g in now_stored and _same_version(doc, now_stored[g])]


def _kept_private(doc: dict, stored: dict) -> dict:
    """A partial update of a stored private meeting does not bring its subject back."""
    if "sensitivity" not in doc and stored.get("sensitivity") in PRIVATE and "subject" in doc:
        return {**doc, "subject": None}
    return doc


def _same_version(doc: dict, stored: dict) -> bool:
    return doc.get("last_modified") == as_utc(stored.get("last_modified")) and \
        doc.get("change_key") == stored.get("change_key")


_ALIVE = object()   # no tombstone


def _buried(doc: dict, deleted_version) -> bool:
    """Whether a tombstone says this version (or a newer one) of the event was deleted.

    A deleted event whose version we never knew blocks nothing, as before.
    """
    if deleted_version is _ALIVE or deleted_version is None:
        return False
    modified = doc.get("last_modified")
    return modified is None or modified <= deleted_version


def _tombstones(db: Database, user_id: str, graph_ids: list[str], now: datetime) -> dict[str, datetime | None]:
    """graph_id → the version we deleted, for live tombstones (an expired one counts as gone even if the
    TTL monitor has not removed it yet)."""
    found = db.event_tombstones.find(
        {"user_id": user_id, "graph_id": {"$in": graph_ids}, "expires_at": {"$gt": now}},
        {"graph_id": 1, "last_modified": 1},
    ).hint(BY_USER_AND_ID)   # the expires_at range would lead SecantusDB's planner to a collection scan
    return {t["graph_id"]: as_utc(t.get("last_modified")) for t in found}


def _undo_buried_inserts(db: Database, user_id: str, inserted: dict[str, dict], now: datetime) -> set[str]:
    """Delete what we just inserted if a deletion of that version landed meanwhile; returns their ids."""
    if not inserted:
        return set()
    undone = set()
    for graph_id, deleted_version in _tombstones(db, user_id, list(inserted), now).items():
        doc = inserted[graph_id]
        if _buried(doc, deleted_version) and db.events.delete_one(
                {"user_id": user_id, "graph_id": graph_id, "last_modified": doc.get("last_modified")}).deleted_count:
            undone.add(graph_id)
    if undone:
        _written(db, [user_id])
    return undone


def _delete(db: Database, user_id: str, graph_id: str, now: datetime, calendar_id: str | None = None,
            tombstone: bool = True) -> int:
    """Delete a stored event (only while it is stored under ``calendar_id``, or under none, when given), writing
    its tombstone first so a concurrent older insert can see it."""
    key = {"user_id": user_id, "graph_id": graph_id}
    where = key | ({"calendar_id": {"$in": [calendar_id, None]}} if calendar_id is not None else {})
    existing = db.events.find_one(where, {"last_modified": 1})
    if existing is None:
        return 0
    last_modified = as_utc(existing.get("last_modified"))
    if tombstone:
        db.event_tombstones.update_one(
            key, {"$set": {"last_modified": last_modified, "expires_at": now + timedelta(days=TOMBSTONE_DAYS)}},
            upsert=True,
        )
    deleted = db.events.delete_one(where).deleted_count
    if deleted:
        _written(db, [user_id])
    return deleted


def delete_missing(db: Database, user_id: str, calendar_id: str, present: set[str], before: datetime, *,
                   orphans: bool = False, changes: MeetingChanges | None = None,
                   removals: Removals | None = None) -> int:
    """After a full resync of a calendar: delete its events Graph no longer lists (stored before it began).
    With ``orphans`` (the default calendar), events stored without a calendar count as this one's. With
    ``removals`` they are only noted there (see ``apply_changes``)."""
    calendars = {"$in": [calendar_id, None]} if orphans else calendar_id
    stale = [
        doc["graph_id"]
        for doc in db.events.find({"user_id": user_id, "calendar_id": calendars, "stored_at": {"$lt": before}},
                                  {"graph_id": 1})
        if doc["graph_id"] not in present
    ]
    if removals is not None:
        removals.update({graph_id: (calendar_id, False) for graph_id in stale})
        return 0
    if stale:
        db.events.delete_many({"user_id": user_id, "graph_id": {"$in": stale}})
        _written(db, [user_id])
    for graph_id in stale if changes is not None else ():
        changes.delete(graph_id)
    return len(stale)


def series_occurrences(db: Database, user_id: str, calendar_id: str, masters: Iterable[str] | None,
                       start: datetime, end: datetime) -> dict[str, list[dict]]:
    """master id -> the stored occurrences and exceptions of that series in one calendar overlapping [start, end);
    every series with some when ``masters`` is None."""
    query: dict = {"user_id": user_id, "calendar_id": calendar_id, "start": {"$lt": end}, "end": {"$gt": start}}
    query["series_master_id"] = {"$in": sorted(masters)} if masters is not None else {"$type": "string"}
    found: dict[str, list[dict]] = {}
    fields = {"graph_id": 1, "series_master_id": 1, "start": 1, "start_tz": 1, "type": 1}
    for doc in db.events.find(query, fields).hint(BY_USER_AND_START):
        found.setdefault(doc["series_master_id"], []).append(doc)
    return found


def calendars_of(db: Database, user_id: str, graph_ids: list[str]) -> dict[str, str | None]:
    """{graph id: calendar id} of the given events that are stored (None for an event of no known calendar)."""
    if not graph_ids:
        return {}
    found = db.events.find({"user_id": user_id, "graph_id": {"$in": graph_ids}}, {"graph_id": 1, "calendar_id": 1})
    return {doc["graph_id"]: doc.get("calendar_id") for doc in found}


def delete_for_calendar(db: Database, user_id: str, calendar_id: str, changes: MeetingChanges | None = None) -> int:
    """Forget the events of one calendar (it was deleted in Outlook, or the user turned it off)."""
    if changes is not None:
        for doc in db.events.find({"user_id": user_id, "calendar_id": calendar_id}, {"graph_id": 1}):
            changes.delete(doc["graph_id"])
    deleted = db.events.delete_many({"user_id": user_id, "calendar_id": calendar_id}).deleted_count
    if deleted:
        _written(db, [user_id])
    return deleted


def adopt_orphans(db: Database, user_id: str, calendar_id: str) -> int:
    """Events stored before calsync knew calendars belong to the default one."""
    adopted = db.events.update_many({"user_id": user_id, "calendar_id": {"$exists": False}},
                                    {"$set": {"calendar_id": calendar_id}}).modified_count
    if adopted:
        _written(db, [user_id])   # which copy of a meeting on two calendars counts may change
    return adopted


def delete_ended_before(db: Database, cutoff: datetime, batch: int = 1_000) -> int:
    """Retention: forget every event that ended before ``cutoff``, a batch of ids (from the ``end`` index)
    at a time, so one run never holds a long delete."""
    removed = 0
    while True:
        found = list(db.events.find({"end": {"$lt": cutoff}}, {"_id": 1, "user_id": 1}).hint(BY_END).limit(batch))
        if not found:
            return removed
        removed += db.events.delete_many({"_id": {"$in": [d["_id"] for d in found]}}).deleted_count
        # Only weeks begun before the cutoff held these events (a day's margin for every zone): the later weeks
        # of these people stay stored, so the daily sweep does not make every active person's week cold again.
        last = (cutoff + timedelta(days=1)).isocalendar()
        week_summaries.forget_weeks_to(db, {d["user_id"] for d in found if d.get("user_id")},
                                       week_summaries.week_key(last[0], last[1]))


def delete_for_user(db: Database, user_id: str) -> int:
    """Forget every stored event of a user (disconnect), and the weekly summaries made of them."""
    db.event_tombstones.delete_many({"user_id": user_id})
    deleted = db.events.delete_many({"user_id": user_id}).deleted_count
    week_summaries.delete_for_user(db, user_id)
    return deleted


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
    """An event by its Graph id, or by the regular id it had before calsync switched to immutable ids (links
    sent before the switch name that one; a miss reads only this user's events, by the user_graph_id prefix)."""
    return (db.events.find_one({"user_id": user_id, "graph_id": graph_id})
            or db.events.find_one({"user_id": user_id, "former_graph_id": graph_id}))


def ids_of(db: Database, user_id: str) -> tuple[set[str], set[str]]:
    """(every stored Graph id, every series master id) of a user's events and tombstones."""
    graph_ids, masters = set(), set()
    for doc in db.events.find({"user_id": user_id}, {"graph_id": 1, "series_master_id": 1}):
        graph_ids.add(doc["graph_id"])
        if doc.get("series_master_id"):
            masters.add(doc["series_master_id"])
    graph_ids |= {t["graph_id"] for t in db.event_tombstones.find({"user_id": user_id}, {"graph_id": 1})}
    return graph_ids, masters


@_bumps_once
def rename_ids(db: Database, user_id: str, renamed: dict[str, str]) -> int:
    """Give stored events (and tombstones) their new Graph ids in place, keeping each document (its ``_id`` is the
    dashboard key) and the old id as ``former_graph_id``; series references follow. Returns events renamed."""
    changed = 0
    for old, new in renamed.items():
        if old == new:
            continue
        # A copy already stored under the new id (written meanwhile) gives way to the older document.
        db.events.delete_one({"user_id": user_id, "graph_id": new})
        changed += db.events.update_one({"user_id": user_id, "graph_id": old},
                                        {"$set": {"graph_id": new, "former_graph_id": old}}).modified_count
        db.events.update_many({"user_id": user_id, "series_master_id": old}, {"$set": {"series_master_id": new}})
        _written(db, [user_id])   # a meeting's key and an exclusion's match follow the ids
        db.event_tombstones.delete_one({"user_id": user_id, "graph_id": new})
        db.event_tombstones.update_one({"user_id": user_id, "graph_id": old}, {"$set": {"graph_id": new}})
    return changed


def calendars_holding(db: Database, user_id: str, graph_ids: Iterable[str]) -> set[str]:
    """The calendars whose stored events include any of ``graph_ids``."""
    wanted = sorted(set(graph_ids))
    if not wanted:
        return set()
    return {c for c in db.events.distinct("calendar_id", {"user_id": user_id, "graph_id": {"$in": wanted}}) if c}


def in_window(db: Database, user_id: str, start: datetime, end: datetime) -> list[dict]:
    """A user's events overlapping [start, end), earliest first.

    Not bounded below on ``start``: an event has no longest duration (a timed meeting may run for weeks), so a
    lower bound would drop the long ones. The server is asked for the user's events starting before ``end`` (an
    equality and one range: every planner, SecantusDB's explain included, answers it with the user's slice of
    the ``(user_id, start)`` index, which retention keeps to ~90 days), and ``end > start`` is checked here.
    Hinted, SecantusDB walked the whole index instead; unhinted with the ``end`` clause, its explain reports a
    collection scan. Measured there, one user among 36,000 events (40 users, 150 days): a day's window 1,461 ms
    hinted, 38 ms now; 56 days back 1,966 ms hinted, 35 ms now."""
    query = {"user_id": user_id, "start": {"$lt": end}}
    after = as_utc(start)
    return [doc for doc in db.events.find(query).sort("start", ASCENDING) if _ends_after(doc, after)]


def _ends_after(doc: dict, instant: datetime) -> bool:
    end = doc.get("end")
    return isinstance(end, datetime) and as_utc(end) > instant


PREP_FIELDS = {"user_id": 1, "graph_id": 1, "ical_uid": 1, "start": 1, "end": 1, "is_all_day": 1,
               "is_cancelled": 1, "series_master_id": 1, "organizer": 1, "attendees": 1, "response": 1}


def starting_between(db: Database, start: datetime, end: datetime) -> list[dict]:
    """Every user's timed, not cancelled events starting in (start, end], earliest first: one range of the
    ``start`` index, so the prep tick costs what is starting soon, not all events."""
    query = {"start": {"$gt": start, "$lte": end}, "is_all_day": {"$ne": True}, "is_cancelled": {"$ne": True}}
    return list(db.events.find(query, PREP_FIELDS).sort("start", ASCENDING).hint(BY_START))


def page_in_window(db: Database, user_id: str, start: datetime, end: datetime,
                   after: tuple[datetime, str] | None, limit: int) -> list[dict]:
    """A page of a user's events overlapping [start, end), by (start, graph_id), after the key ``after``.

    Asked as ``in_window`` asks (unhinted: an equality on ``user_id`` and one range on ``start``, from ``after``'s
    start when there is one, so the user's slice of ``(user_id, start)`` in index order), with ``end > start``, the
    key's tie on ``start`` and the order among equal starts decided here; the cursor is read only until the page
    is full and every event sharing its last start is seen. Hinted, with ``end`` and the key's ``$or`` on the
    server, SecantusDB walked the whole index (every user's events) for each page."""
    since = {"$gte": as_utc(after[0])} if after else {}
    query = {"user_id": user_id, "start": {**since, "$lt": end}}
    window_start = as_utc(start)
    kept: list[dict] = []
    for doc in db.events.find(query).sort("start", ASCENDING).batch_size(max(limit + 1, 2)):
        doc_start = as_utc(doc.get("start"))
        if len(kept) >= limit and doc_start > as_utc(kept[-1]["start"]):
            break
        if not _ends_after(doc, window_start):
            continue
        if after and doc_start == as_utc(after[0]) and doc.get("graph_id", "") <= after[1]:
            continue
        kept.append(doc)
    kept.sort(key=lambda d: (as_utc(d["start"]), d.get("graph_id", "")))
    return kept[:limit]


def by_ical_uids(db: Database, user_id: str, ical_uids: Iterable[str]) -> list[dict]:
    """Every stored copy of the given meetings (one per calendar they appear in)."""
    wanted = sorted(set(ical_uids))
    if not wanted:
        return []
    return list(db.events.find({"user_id": user_id, "ical_uid": {"$in": wanted}}))


def one_of_series(db: Database, user_id: str, series_master_id: str) -> dict | None:
    """One stored occurrence of a series (the user's page names an excluded series by it): the user's events
    through the unique index's ``user_id`` prefix, filtered on the series."""
    return db.events.find_one({"user_id": user_id, "series_master_id": series_master_id},
                              sort=[("start", ASCENDING)])


def by_key(db: Database, key: str) -> dict | None:
    """An event by its stored ``_id`` (the key in dashboard URLs); None for anything malformed."""
    if not isinstance(key, str) or len(key) > 200:
        return None
    try:
        return db.events.find_one({"_id": ObjectId(key)})
    except (InvalidId, TypeError):
        return db.events.find_one({"_id": key})


def iterate_for_user(db: Database, user_id: str, batch: int) -> Iterator[dict]:
    """Every stored event of a user, in Graph id order, fetched ``batch`` at a time by one server cursor
    (one range query per batch costs a scan each on some servers; a cursor's getMore does not)."""
    found = db.events.find({"user_id": user_id}, {"_id": 0, "user_id": 0})
    yield from found.batch_size(batch)


def for_user(db: Database, user_id: str) -> list[dict]:
    return list(db.events.find({"user_id": user_id}))


def count_holding(db: Database, fields: Iterable[str]) -> int:
    """How many stored events hold any of ``fields`` (the proof that bodies never reach the store)."""
    return db.events.count_documents({"$or": [{name: {"$exists": True}} for name in fields]})


# What the week's measures read of an event (the attendees' names, change keys and the rest stay on the server).
WEEK_FIELDS = {"_id": 0, "user_id": 1, "graph_id": 1, "ical_uid": 1, "start": 1, "end": 1, "is_all_day": 1,
               "is_cancelled": 1, "sensitivity": 1, "subject": 1, "organizer.email": 1, "attendees.email": 1,
               "attendees.type": 1, "attendees.response": 1, "response": 1, "hide_attendees": 1,
               "series_master_id": 1}


def in_window_for_users(db: Database, user_ids: Iterable[str], start: datetime, end: datetime,
                        longest: timedelta = timedelta(days=14)) -> dict[str, list[dict]]:
    """Many users' events overlapping [start, end), earliest first per user, for meetings shorter than ``longest``
    (the weekly insights of a whole organisation read this way), only the fields the week needs.

    One query per user, an equality on ``user_id`` and a range on ``start`` bounded on both sides: every planner
    answers it with exactly that slice of the ``(user_id, start)`` index, so reading N people costs N people's
    events whatever else is stored. Measured on SecantusDB (1,000 people x 40 events): 4.4 s, of which about
    0.8 ms a query is the round trip. What it replaced cost more: one ``(user_id, start)`` range of 500 ids
    hinted (SecantusDB walks the whole hinted index, so an organisation cost batches x all its events: 11.8 s for
    the same 1,000 people, quadratic in their number), the same range unhinted (8.6 s: only the ids bound it),
    ``$in`` of 500 ids (27 s: a collection scan there). Two threads gained nothing (the server is the limit)."""
    wanted = sorted(set(user_ids))
    found: dict[str, list[dict]] = {user_id: [] for user_id in wanted}
    for user_id in wanted:
        query = {"user_id": user_id, "start": {"$gte": start - longest, "$lt": end}}
        for doc in db.events.find(query, WEEK_FIELDS).sort("start", ASCENDING):
            if _ends_after(doc, as_utc(start)):
                found[user_id].append(doc)
    return found
