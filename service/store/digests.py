"""Daily digest records: one per (user, local date), claimed before sending so a digest goes out once.

``{_id: "<user_id>:<yyyy-mm-dd>", user_id, local_date, status: sending|sent|skipped|failed, reason,
attempts, claimed_at, holder, sent_at, message_id, error}``. ``skipped`` also stops the tick from re-enqueueing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from service.store import claims, utcnow

SENDING = "sending"
SENT = "sent"
SKIPPED = "skipped"
FAILED = "failed"

# A claim older than this whose worker never reported back is taken over (the worker died).
STALE_CLAIM = timedelta(minutes=15)

INDEXES = {
    "digests_sent": [
        # Operators count today's outcomes (sent, failed) by when they finished.
        IndexModel([("status", ASCENDING), ("finished_at", ASCENDING)], name="status_finished"),
        IndexModel([("user_id", ASCENDING), ("local_date", ASCENDING)], unique=True, name="user_local_date"),
    ],
}
RETIRED_INDEXES = {"digests_sent": ["local_date"]}   # records are read by _id


def record_id(user_id: str, local_date: str) -> str:
    return f"{user_id}:{local_date}"


def get(db: Database, user_id: str, local_date: str) -> dict | None:
    return db.digests_sent.find_one({"_id": record_id(user_id, local_date)})


def claim(db: Database, user_id: str, local_date: str, now: datetime | None = None, holder: str | None = None,
          holder_alive: Callable[[str], bool] | None = None) -> dict | None:
    """Take the right to send this digest; None if it was sent, skipped or is being sent elsewhere.

    ``holder`` names who sends (the worker's running RQ execution, ``service.channels.claims``): a claim whose
    recorded holder is no longer alive (``holder_alive``) is taken over at once, since its worker died mid-send
    and RQ retries the job at once. Without a holder, or a way to tell, a claim is taken over once
    ``STALE_CLAIM`` old (by then the killed job's retries would have found it held and given up)."""
    now = now or utcnow()
    try:
        document = {"_id": record_id(user_id, local_date), "user_id": user_id, "local_date": local_date,
                    "status": SENDING, "attempts": 1, "claimed_at": now, "holder": holder}
        db.digests_sent.insert_one(document)
        return document
    except DuplicateKeyError:
        pass
    existing = get(db, user_id, local_date)
    if existing is None:
        return None
    if not claims.retakeable(existing, now, STALE_CLAIM, holder, holder_alive):
        return None
    # Conditional on the state we read, so two retries cannot both take over.
    return db.digests_sent.find_one_and_update(
        {"_id": existing["_id"], "status": existing["status"], "claimed_at": existing.get("claimed_at")},
        {"$set": {"status": SENDING, "claimed_at": now, "holder": holder, "error": None}, "$inc": {"attempts": 1}},
        return_document=ReturnDocument.AFTER,
    )


def for_user(db: Database, user_id: str) -> list[dict]:
    """The user's digest records, oldest first (one per day: a year of them is small)."""
    found = db.digests_sent.find({"user_id": user_id}, {"_id": 0, "user_id": 0}).sort("local_date", ASCENDING)
    return list(found.hint("user_local_date"))


def delete_for_user(db: Database, user_id: str) -> int:
    return db.digests_sent.delete_many({"user_id": user_id}).deleted_count


def finish(db: Database, user_id: str, local_date: str, status: str, **fields) -> None:
    """Record the outcome of a claimed digest (sent, skipped or failed)."""
    db.digests_sent.update_one(
        {"_id": record_id(user_id, local_date)},
        {"$set": {"status": status, "finished_at": utcnow(), **fields}},
    )


def recorded(db: Database, user_ids: Iterable[str], local_dates: Iterable[str]) -> set[str]:
    """The record ids that exist for these users and dates (any status)."""
    ids = [record_id(u, d) for u, d in zip(user_ids, local_dates, strict=True)]
    if not ids:
        return set()
    return {doc["_id"] for doc in db.digests_sent.find({"_id": {"$in": ids}}, {"_id": 1})}
