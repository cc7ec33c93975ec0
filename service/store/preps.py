"""Meeting prep records: one per (user, meeting occurrence), claimed before sending so a prep goes out once.

``{_id, user_id, meeting (iCalUId, or the Graph id of a meeting without one), start (UTC), status:
sending|sent|skipped|failed, reason, attempts, claimed_at, sent_at, message_id, error, expires_at}``. The
occurrence is the meeting *at that start*: a meeting moved to another time is another occurrence, so it gets
its prep at the new time, and the old time's prep (if planned) finds the meeting gone from it. Records are
forgotten a week after the meeting (TTL), long after any retry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from service.store import as_utc, claims, utcnow

SENDING = "sending"
SENT = "sent"
SKIPPED = "skipped"
FAILED = "failed"

STALE_CLAIM = timedelta(minutes=5)   # a worker that claimed and never reported back died; prep is short-lived
KEEP = timedelta(days=7)

INDEXES = {
    "preps_sent": [
        # Operators count today's outcomes (sent, failed) by when they finished.
        IndexModel([("status", ASCENDING), ("finished_at", ASCENDING)], name="status_finished"),
        IndexModel([("user_id", ASCENDING), ("start", ASCENDING)], name="user_start"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at"),
    ],
}


def record_id(user_id: str, meeting: str, start: datetime) -> str:
    """A short stable id for an occurrence (iCalUIds can be long)."""
    raw = f"{user_id}\x00{meeting}\x00{as_utc(start).isoformat()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def get(db: Database, user_id: str, meeting: str, start: datetime) -> dict | None:
    return db.preps_sent.find_one({"_id": record_id(user_id, meeting, start)})


def recorded(db: Database, ids: Iterable[str]) -> set[str]:
    """Which of these record ids exist (any status): one query by _id."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    return {doc["_id"] for doc in db.preps_sent.find({"_id": {"$in": wanted}}, {"_id": 1})}


def claim(db: Database, user_id: str, meeting: str, start: datetime, now: datetime | None = None,
          holder: str | None = None, holder_alive: Callable[[str], bool] | None = None) -> dict | None:
    """Take the right to send this prep; None if it was sent, skipped or is being sent elsewhere (a claim whose
    holder died is taken over at once: ``claims.retakeable``)."""
    now = now or utcnow()
    start = as_utc(start)
    document = {"_id": record_id(user_id, meeting, start), "user_id": user_id, "meeting": meeting, "start": start,
                "status": SENDING, "attempts": 1, "claimed_at": now, "holder": holder,
                "expires_at": max(start, utcnow()) + KEEP}   # the server's clock decides a TTL, not ``now``
    try:
        db.preps_sent.insert_one(document)
        return document
    except DuplicateKeyError:
        pass
    existing = db.preps_sent.find_one({"_id": document["_id"]})
    if existing is None:
        return None
    if not claims.retakeable(existing, now, STALE_CLAIM, holder, holder_alive):
        return None
    # Conditional on the state we read, so two retries cannot both take over.
    return db.preps_sent.find_one_and_update(
        {"_id": existing["_id"], "status": existing["status"], "claimed_at": existing.get("claimed_at")},
        {"$set": {"status": SENDING, "claimed_at": now, "holder": holder, "error": None}, "$inc": {"attempts": 1}},
        return_document=ReturnDocument.AFTER,
    )


def finish(db: Database, record: str, status: str, **fields) -> None:
    db.preps_sent.update_one({"_id": record}, {"$set": {"status": status, "finished_at": utcnow(), **fields}})


def for_user(db: Database, user_id: str) -> list[dict]:
    """The user's prep records, by meeting start (their data export)."""
    found = db.preps_sent.find({"user_id": user_id}, {"_id": 0, "user_id": 0}).sort("start", ASCENDING)
    return list(found.hint("user_start"))


def delete_for_user(db: Database, user_id: str) -> int:
    return db.preps_sent.delete_many({"user_id": user_id}).deleted_count


def rename_ids(db: Database, user_id: str, renamed: dict[str, str]) -> int:
    """Prep records follow their meetings' new Graph ids: the ``graph_id`` field, and the record itself (its id
    derives from the meeting key) when the meeting had no iCalUId and was named by its Graph id."""
    wanted = sorted(renamed)
    changed = 0
    for doc in list(db.preps_sent.find({"user_id": user_id, "$or": [{"graph_id": {"$in": wanted}},
                                                                     {"meeting": {"$in": wanted}}]})):
        fields = {}
        if doc.get("graph_id") in renamed:
            fields["graph_id"] = renamed[doc["graph_id"]]
        if doc.get("meeting") in renamed:
            meeting = renamed[doc["meeting"]]
            moved = {**doc, **fields, "meeting": meeting, "_id": record_id(user_id, meeting, as_utc(doc["start"]))}
            try:
                db.preps_sent.insert_one(moved)
            except DuplicateKeyError:
                pass
            db.preps_sent.delete_one({"_id": doc["_id"]})
            changed += 1
        elif fields:
            changed += db.preps_sent.update_one({"_id": doc["_id"]}, {"$set": fields}).modified_count
    return changed


def meetings_of(db: Database, user_id: str) -> set[str]:
    """The meeting keys and Graph ids the user's prep records name."""
    found = set()
    for doc in db.preps_sent.find({"user_id": user_id}, {"meeting": 1, "graph_id": 1}).hint("user_start"):
        found |= {v for v in (doc.get("meeting"), doc.get("graph_id")) if isinstance(v, str)}
    return found
