"""Read-only reporting queries for operators, across the domain collections."""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo import ASCENDING
from pymongo.database import Database

INDEXES: dict = {}


def subscriptions_overview(db: Database, limit: int = 500) -> list[dict]:
    """Every subscription with its owner's email and connection status, soonest expiry first."""
    owners = {}
    rows = list(db.subscriptions.find({}).sort("expires_at", ASCENDING).limit(limit))
    user_ids = list({row.get("user_id") for row in rows})
    for user in db.users.find({"_id": {"$in": user_ids}}, {"email": 1, "connection.status": 1}):
        owners[user["_id"]] = user
    for row in rows:
        owner = owners.get(row.get("user_id"), {})
        row["user_email"] = owner.get("email")
        row["connection_status"] = (owner.get("connection") or {}).get("status")
    return rows




def counts(db: Database, now: datetime, soon: timedelta) -> dict[str, int]:
    """Headline numbers for the dashboard and the metrics endpoint."""
    return {
        "users_total": db.users.count_documents({}),
        "users_connected": db.users.count_documents({"connection.status": "connected"}),
        "users_needs_reconnect": db.users.count_documents({"connection.status": "needs_reconnect"}),
        "subscriptions_total": db.subscriptions.count_documents({}),
        "subscriptions_failing": db.subscriptions.count_documents({"failures": {"$gt": 0}}),
        "subscriptions_expiring_soon": db.subscriptions.count_documents({"expires_at": {"$lt": now + soon}}),
        "subscriptions_expired": db.subscriptions.count_documents({"expires_at": {"$lt": now}}),
        "users_with_sync_errors": db.users.count_documents({"sync.error_count": {"$gt": 0}}),
        "events_stored": db.events.estimated_document_count(),
    }
