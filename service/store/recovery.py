"""What calsync remembers in MongoDB about its Redis and its own recoveries (``recovery`` collection, by _id).

``{_id: "redis-epoch", epoch, seq, at, previous, lost_at, reason, recovery: {status: pending|done, started_at,
finished_at, counts}}``: the epoch names the Redis dataset the service is using (the same id is in Redis as
``calsync:epoch``), ``seq`` the highest heartbeat of it MongoDB has seen. ``{_id: "restore-<time>", ...}``: one
record per ``calsync recover`` run and what it did.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from service.store import as_utc, utcnow

EPOCH_ID = "redis-epoch"


def epoch(db: Database) -> dict | None:
    return db.recovery.find_one({"_id": EPOCH_ID})


def start_epoch(db: Database, new: str, seq: int, now: datetime | None = None) -> bool:
    """The first epoch this deployment records (no recovery: nothing is known to be lost); False if one exists."""
    try:
        db.recovery.insert_one({"_id": EPOCH_ID, "epoch": new, "seq": seq, "at": now or utcnow()})
    except DuplicateKeyError:
        return False
    return True


def raise_seq(db: Database, current: str, seq: int, now: datetime | None = None) -> None:
    """Record that Redis of epoch ``current`` has reached heartbeat ``seq`` (never lowers it)."""
    db.recovery.update_one({"_id": EPOCH_ID, "epoch": current}, {"$max": {"seq": seq}, "$set": {"at": now or utcnow()}})


def replace_epoch(db: Database, previous: str | None, new: str, reason: str,
                  now: datetime | None = None) -> dict | None:
    """Move from ``previous`` to ``new`` (compare-and-set: one process wins) and mark a recovery pending."""
    now = now or utcnow()
    return db.recovery.find_one_and_update(
        {"_id": EPOCH_ID, "epoch": previous},
        {"$set": {"epoch": new, "seq": 0, "at": now, "previous": previous, "lost_at": now, "reason": reason,
                  "recovery": {"status": "pending", "started_at": now}}},
        return_document=ReturnDocument.AFTER)


def adopt_epoch(db: Database, new: str, seq: int, reason: str, now: datetime | None = None) -> None:
    """Take Redis's epoch as ours without a recovery (MongoDB was the one that went back in time)."""
    now = now or utcnow()
    db.recovery.update_one({"_id": EPOCH_ID}, {"$set": {"epoch": new, "seq": seq, "at": now, "adopted_at": now,
                                                        "adopted_reason": reason}}, upsert=True)


def claim_recovery(db: Database, current: str, stale_before: datetime, now: datetime | None = None) -> bool:
    """Retake a pending recovery whose runner died (started before ``stale_before``)."""
    result = db.recovery.update_one(
        {"_id": EPOCH_ID, "epoch": current, "recovery.status": "pending", "recovery.started_at": {"$lt": stale_before}},
        {"$set": {"recovery.started_at": now or utcnow()}, "$inc": {"recovery.attempts": 1}})
    return result.modified_count == 1


def finish_recovery(db: Database, current: str, counts: dict, now: datetime | None = None) -> None:
    db.recovery.update_one({"_id": EPOCH_ID, "epoch": current},
                           {"$set": {"recovery.status": "done", "recovery.finished_at": now or utcnow(),
                                     "recovery.counts": counts}})


def record_restore(db: Database, report: dict, now: datetime | None = None) -> str:
    """Keep what one ``calsync recover`` run did; returns its id."""
    now = now or utcnow()
    record_id = f"restore-{now.strftime('%Y%m%dT%H%M%S.%fZ')}"
    db.recovery.insert_one({"_id": record_id, "at": now, **report})
    return record_id


def digests_taken(db: Database) -> list[tuple[str, str]]:
    """(user_id, local date) of the last digest the tick took for each connected user (``digest.last_date``):
    the tick moves ``next_at`` on before it queues the job, so a job lost with Redis is found from here.
    A scan of the users, run once per recovery."""
    found = db.users.find({"connection.status": "connected", "digest.last_date": {"$type": "string"}},
                          {"digest.last_date": 1})
    return [(doc["_id"], doc["digest"]["last_date"]) for doc in found]


def connected_by_recent_notification(db: Database) -> list[str]:
    """Connected users, the most recently notified first (their notifications are the likeliest to be lost)."""
    found = db.users.find({"connection.status": "connected"}, {"sync.last_notification_at": 1})
    floor = datetime.min.replace(tzinfo=utcnow().tzinfo)
    stamped = [(as_utc((doc.get("sync") or {}).get("last_notification_at")) or floor, doc["_id"]) for doc in found]
    return [user_id for _, user_id in sorted(stamped, reverse=True)]


def restore_digest_sent(db: Database, user_id: str, local_date: str, sent_at: datetime) -> bool:
    """Record a digest Redis saw sent after the backup MongoDB came back from; True if the record was missing
    or unfinished (then the tick's job finds it handled instead of sending it again)."""
    try:
        result = db.digests_sent.update_one(
            {"_id": f"{user_id}:{local_date}", "status": {"$ne": "sent"}},
            {"$set": {"status": "sent", "sent_at": sent_at, "finished_at": sent_at, "restored_from": "redis"},
             "$setOnInsert": {"user_id": user_id, "local_date": local_date, "attempts": 1}}, upsert=True)
    except DuplicateKeyError:   # recorded as sent already
        return False
    return result.modified_count == 1 or result.upserted_id is not None


def restore_prep_sent(db: Database, record_id: str, user_id: str, meeting: str, start: datetime, sent_at: datetime,
                      keep: timedelta) -> bool:
    """The same for a prep mail (``preps_sent``; expires like the records prep writes)."""
    try:
        result = db.preps_sent.update_one(
            {"_id": record_id, "status": {"$ne": "sent"}},
            {"$set": {"status": "sent", "sent_at": sent_at, "finished_at": sent_at, "restored_from": "redis"},
             "$setOnInsert": {"user_id": user_id, "meeting": meeting, "start": start, "attempts": 1,
                              "expires_at": max(start, utcnow()) + keep}}, upsert=True)
    except DuplicateKeyError:
        return False
    return result.modified_count == 1 or result.upserted_id is not None


def advance_sequences(db: Database, gap: int) -> int:
    """Move every user's outbound sequence on by ``gap``: numbers handed out after the backup are never reused."""
    return db.outbound_sequences.update_many({}, {"$inc": {"value": gap}}).modified_count


def preps_unfinished(db: Database, after: datetime) -> list[dict]:
    """Prep records claimed but not finished (``sending``, ``failed``) for meetings that start after ``after``:
    their job may have gone with Redis, and the prep tick skips every recorded prep."""
    return list(db.preps_sent.find({"status": {"$in": ["sending", "failed"]}, "start": {"$gt": after}},
                                   {"user_id": 1, "meeting": 1, "start": 1, "status": 1}))
