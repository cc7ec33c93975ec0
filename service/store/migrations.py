"""Which data migrations have run: ``{_id: name, changed, finished_at}`` (see ``service.cli.migrations``)."""

from __future__ import annotations

from pymongo.database import Database

from service.store import utcnow

INDEXES: dict[str, list] = {"migrations": []}   # looked up by _id only


def done(db: Database, name: str) -> bool:
    return db.migrations.find_one({"_id": name}, {"_id": 1}) is not None


def record(db: Database, name: str, changed: int) -> None:
    db.migrations.update_one({"_id": name}, {"$set": {"changed": changed, "finished_at": utcnow()}}, upsert=True)
