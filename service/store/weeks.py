"""Finished weekly insights kept per person (``week_summaries``), so an organisation's weeks are read as one small
document a person instead of all their meetings (bench P9).

One document per user: ``{_id: user_id, user_id, events_version: n, weeks: {"2026-10": {fingerprint, report}}}``.

- ``events_version`` counts the writes to the user's stored events: every write in ``service.store.events``
  bumps it once it is done (a sync round twice: after its first write, with ``writing`` set, and at its end) and
  drops every summary of the user with it (``bump``). A summary is stored only while the version is still the
  one read before its events were read and no round is writing (``store``: a compare-and-set on the same
  document), so a week measured from events read before a write can never be stored, or served, as fresh after
  that write.
- ``fingerprint`` (made by ``service.insights.timeside``) is a hash of every other input of the week (zone,
  working hours, exclusions, the person's own addresses, the measures' code version), compared on read: a change
  of any of them recomputes the week without a hook where it changed.
- Reports are opaque here (``service.insights.week.report_doc``). The user's data deletion deletes the document
  (``delete_for_user``, from ``events.delete_for_user``); ``store`` never creates one, so a week measured while
  the user was being deleted is not written back.

Reads by many users are one range of the ``user_id`` index (the users sorted, as ``timeside.weeks_for`` batches
them). Measured on SecantusDB, 500 of 10,000 documents: that range 62 ms (an index scan); the same range of
``_id`` 595 ms (its planner scans the collection for an ``_id`` range); ``$in`` of the 500 ids 0.8-1.0 s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

COLLECTION = "week_summaries"
DUPLICATE_KEY = 11000
BY_USER = "user_id"
INDEXES = {COLLECTION: [IndexModel([("user_id", ASCENDING)], unique=True, name=BY_USER)]}


def week_key(year: int, week: int) -> str:
    return f"{year}-{week:02d}"


@dataclass(frozen=True)
class Held:
    """What is stored for one user and one week: the events version to compare-and-set against, and the
    summary (``{"fingerprint", "report"}``) if there is one."""

    version: int
    summary: dict | None


def read(db: Database, user_ids: Iterable[str], year: int, week: int) -> dict[str, Held]:
    """Each user's events version and stored summary of one week: one ``_id`` range for all of them (plus, for
    users with no document yet, one insert of their version 0, so ``store`` has a document to compare against
    and never needs an upsert). Users between the first and last id that were not asked for are read and
    dropped: callers ask for people whose ids sit together (an organisation, sorted)."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    key = week_key(year, week)
    found: dict[str, Held] = {}
    ids = set(wanted)
    query = {"user_id": {"$gte": wanted[0], "$lte": wanted[-1]}}
    for doc in db[COLLECTION].find(query, {"events_version": 1, f"weeks.{key}": 1}):
        if doc["_id"] in ids:
            found[doc["_id"]] = Held(int(doc.get("events_version") or 0), (doc.get("weeks") or {}).get(key))
    missing = [u for u in wanted if u not in found]
    if missing:
        _create(db, missing)
        for user_id in missing:
            found[user_id] = Held(0, None)   # a bump racing the insert leaves a version above 0: store misses
    return found


def _create(db: Database, user_ids: list[str]) -> None:
    try:
        db[COLLECTION].insert_many([{"_id": u, "user_id": u, "events_version": 0} for u in user_ids], ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
            raise


def store(db: Database, year: int, week: int, summaries: dict[str, tuple[int, dict]]) -> int:
    """Store ``{user_id: (events version read before the events, summary)}`` in one round trip, each only if the
    user's version is still the one read (compare-and-set) and no round of writes to their events is under way;
    returns how many were stored."""
    if not summaries:
        return 0
    key = week_key(year, week)
    operations = [UpdateOne({"_id": user_id, "events_version": version, "writing": {"$ne": True}},
                            {"$set": {f"weeks.{key}": summary}})
                  for user_id, (version, summary) in sorted(summaries.items())]
    return db[COLLECTION].bulk_write(operations, ordered=False).matched_count


def bump(db: Database, user_ids: Iterable[str], writing: bool = False) -> None:
    """The users' stored events changed: a new events version, and every summary of theirs dropped. Upserted, so a
    summary measured against a version read as "no document" cannot be stored after this (its insert of
    version 0 meets this document, or this one increments it).

    ``writing``: a round of writes has begun (its first write is done) and is not over: nothing is stored until a
    bump without it ends the round. A worker killed mid-round never ends it, and its half-written events are
    measured afresh on each read until the person's next round ends, instead of a week stored mid-round staying
    fresh."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return
    operations = [UpdateOne({"_id": u}, {"$inc": {"events_version": 1}, "$unset": {"weeks": ""},
                                         "$set": {"writing": writing}, "$setOnInsert": {"user_id": u}}, upsert=True)
                  for u in wanted]
    for _ in range(3):   # two upserts of one new _id at once: the loser meets a duplicate key; its retry updates
        try:
            db[COLLECTION].bulk_write(operations, ordered=False)
            return
        except (BulkWriteError, DuplicateKeyError) as exc:
            details = getattr(exc, "details", None) or {}
            if any(e.get("code") != DUPLICATE_KEY for e in details.get("writeErrors", [])):
                raise
    db[COLLECTION].bulk_write(operations, ordered=False)


def forget_weeks_to(db: Database, user_ids: Iterable[str], last: str) -> None:
    """Retention deleted events of these users that ended before the week ``last`` (a ``week_key``) was over: only
    weeks up to it can have held them. A new events version first (a week being measured from events read before
    the deletion is not stored), then those weeks dropped; the later ones stay fresh. Two round trips for the
    users of a retention batch (one ``$in``: a daily job)."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return
    db[COLLECTION].bulk_write([UpdateOne({"_id": u}, {"$inc": {"events_version": 1}, "$setOnInsert": {"user_id": u}},
                                         upsert=True) for u in wanted], ordered=False)
    drops = []
    for doc in db[COLLECTION].find({"user_id": {"$in": wanted}}, {"weeks": 1}):
        old = [key for key in doc.get("weeks") or {} if key <= last]
        if old:
            drops.append(UpdateOne({"_id": doc["_id"]}, {"$unset": {f"weeks.{key}": "" for key in old}}))
    if drops:
        db[COLLECTION].bulk_write(drops, ordered=False)


def delete_for_user(db: Database, user_id: str) -> int:
    """Forget the user's summaries and version (their data is deleted with their events)."""
    return db[COLLECTION].delete_many({"_id": user_id}).deleted_count


def for_user(db: Database, user_id: str) -> dict:
    """The user's stored summaries by week (``"2026-10"``), for the export of what calsync holds."""
    doc = db[COLLECTION].find_one({"_id": user_id}, {"weeks": 1}) or {}
    return dict(sorted((doc.get("weeks") or {}).items()))
