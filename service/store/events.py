"""Stored calendar events: only the fields the product uses, keyed by (user_id, graph_id).

The write path (delta pages → upserts and deletions) belongs to the sync worker; readers use the
query functions here.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

INDEXES = {
    "events": [
        IndexModel([("user_id", ASCENDING), ("graph_id", ASCENDING)], unique=True, name="user_graph_id"),
        IndexModel([("user_id", ASCENDING), ("start", ASCENDING)], name="user_start"),
        IndexModel([("attendees.email", ASCENDING)], name="attendee_email"),
    ],
}


def get(db: Database, user_id: str, graph_id: str) -> dict | None:
    return db.events.find_one({"user_id": user_id, "graph_id": graph_id})


def in_window(db: Database, user_id: str, start: datetime, end: datetime) -> list[dict]:
    """A user's events overlapping [start, end), earliest first."""
    return list(
        db.events.find({"user_id": user_id, "start": {"$lt": end}, "end": {"$gt": start}}).sort("start", ASCENDING)
    )
