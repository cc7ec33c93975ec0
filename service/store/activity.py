"""What happened to each user lately, for the operators' per-user timeline: notifications, sync rounds, errors and
connection changes (digests and preps have their own records, ``digests_sent`` and ``preps_sent``).

``user_activity {_id: user_id, notification: [...], sync: [...], error: [...], connection: [...]}``: one small
document per user holding the latest entries of each kind (``$push`` with ``$slice``), so a busy mailbox's
notifications never push its errors out, and the cost is one upsert by ``_id`` per entry whatever the history.
Entries: ``{at, text}`` plus a few short fields (result, status, reason); never a body, token or subject.
The store functions that record the events call ``note``; nothing else writes here.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.database import Database

from service.store import as_utc

KEEP = {"notification": 10, "sync": 30, "error": 30, "connection": 20}
INDEXES: dict = {}   # read and written by _id only


def note(db: Database, user_id: str, kind: str, at: datetime, text: str, **fields) -> None:
    """Remember one entry of ``kind`` (the last ``KEEP[kind]`` are kept)."""
    entry = {"at": at, "text": text[:300], **{k: (v[:300] if isinstance(v, str) else v) for k, v in fields.items()}}
    db.user_activity.update_one({"_id": user_id},
                                {"$push": {kind: {"$each": [entry], "$slice": -KEEP[kind]}}}, upsert=True)


def for_user(db: Database, user_id: str) -> list[dict]:
    """Every entry held for the user, newest first, each with its ``kind``."""
    doc = db.user_activity.find_one({"_id": user_id}) or {}
    entries = [{**entry, "kind": kind, "at": as_utc(entry.get("at"))}
               for kind in KEEP for entry in doc.get(kind) or [] if isinstance(entry, dict) and entry.get("at")]
    return sorted(entries, key=lambda e: e["at"], reverse=True)


def delete_for_user(db: Database, user_id: str) -> int:
    return db.user_activity.delete_one({"_id": user_id}).deleted_count
