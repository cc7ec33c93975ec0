"""The people directory: one document per person, matched to attendees by any of their emails.

``{_id, emails: [lower, primary first], primary_email, name, team, assessments: {framework: {...}},
created_at, updated_at}``. An email belongs to at most one person (unique multikey index).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from pymongo import ASCENDING, IndexModel, InsertOne, ReturnDocument, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from service.store import utcnow

INDEXES = {
    "people": [
        IndexModel([("emails", ASCENDING)], unique=True, name="emails_unique"),
    ],
}
RETIRED_INDEXES = {"people": ["primary_email"]}   # people are looked up by any of their emails


def get(db: Database, person_id: str) -> dict | None:
    return db.people.find_one({"_id": person_id})


def by_email(db: Database, email: str) -> dict | None:
    return db.people.find_one({"emails": email.strip().lower()})


def find(db: Database, id_or_email: str) -> dict | None:
    """Look a person up by id or by any of their emails."""
    return get(db, id_or_email) or by_email(db, id_or_email)


def by_emails(db: Database, emails: Iterable[str]) -> list[dict]:
    """Every person owning at least one of ``emails`` (lower-cased)."""
    wanted = sorted({e.strip().lower() for e in emails if e})
    if not wanted:
        return []
    return list(db.people.find({"emails": {"$in": wanted}}))


def owners(db: Database, emails: Iterable[str]) -> dict[str, str]:
    """email → person id, for the emails that already belong to someone."""
    found = {}
    for person in by_emails(db, emails):
        for email in person["emails"]:
            found[email] = person["_id"]
    return found


def create(db: Database, fields: dict) -> dict:
    now = utcnow()
    document = {"_id": uuid.uuid4().hex, **fields, "created_at": now, "updated_at": now}
    db.people.insert_one(document)
    return document


def replace_fields(db: Database, person_id: str, fields: dict) -> dict | None:
    """Overwrite a person's directory fields (emails, name, team, assessments)."""
    return db.people.find_one_and_update(
        {"_id": person_id},
        {"$set": {**fields, "updated_at": utcnow()}},
        return_document=ReturnDocument.AFTER,
    )


DUPLICATE_KEY = 11000


def write_many(db: Database, writes: list[tuple[str | None, dict]]) -> set[int]:
    """Create (person id None) or overwrite the directory fields of many people in one unordered bulk write;
    returns the positions the unique email index refused (another writer holds one of their emails)."""
    if not writes:
        return set()
    now = utcnow()
    operations = [InsertOne({"_id": uuid.uuid4().hex, **fields, "created_at": now, "updated_at": now})
                  if person_id is None else UpdateOne({"_id": person_id}, {"$set": {**fields, "updated_at": now}})
                  for person_id, fields in writes]
    try:
        db.people.bulk_write(operations, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors") or []
        if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return {e["index"] for e in errors}
    return set()


def delete(db: Database, person_id: str) -> bool:
    return db.people.delete_one({"_id": person_id}).deleted_count == 1


def page(db: Database, after: str | None, limit: int) -> list[dict]:
    """People ordered by id, starting after ``after`` (keyset pagination)."""
    query = {"_id": {"$gt": after}} if after else {}
    return list(db.people.find(query).sort("_id", ASCENDING).limit(limit))
