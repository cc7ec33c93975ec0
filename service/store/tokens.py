"""Encrypted MSAL token caches, one per user: ``{_id: user_id, blob, updated_at}``.

This module only moves ciphertext; ``service.auth.crypto`` encrypts and decrypts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from pymongo.database import Database

from service.store import utcnow

INDEXES: dict[str, list] = {"token_caches": []}  # looked up by _id only


def get_blob(db: Database, user_id: str) -> str | None:
    doc = db.token_caches.find_one({"_id": user_id}, {"blob": 1})
    return doc.get("blob") if doc else None


def save_blob(db: Database, user_id: str, blob: str, now: datetime | None = None) -> None:
    """Store (or replace) a user's encrypted cache."""
    db.token_caches.update_one(
        {"_id": user_id}, {"$set": {"blob": blob, "updated_at": now or utcnow()}}, upsert=True
    )


def replace_blob(db: Database, user_id: str, old: str, new: str, now: datetime | None = None) -> bool:
    """Swap ``old`` for ``new`` only if nobody rewrote the cache meanwhile (key rotation without locks)."""
    result = db.token_caches.update_one(
        {"_id": user_id, "blob": old}, {"$set": {"blob": new, "updated_at": now or utcnow()}}
    )
    return result.modified_count == 1


def delete(db: Database, user_id: str) -> bool:
    return db.token_caches.delete_one({"_id": user_id}).deleted_count == 1


def iter_blobs(db: Database) -> Iterator[tuple[str, str]]:
    """Every (user_id, blob) pair, for key rotation."""
    for doc in db.token_caches.find({}, {"blob": 1}):
        yield doc["_id"], doc.get("blob")
