"""Tenants whose administrator granted admin consent: ``{_id: tenant_id, consented_at, consented_by, scopes}``."""

from __future__ import annotations

from datetime import datetime

from pymongo import ReturnDocument
from pymongo.database import Database

from service.store import utcnow

INDEXES: dict[str, list] = {"tenants": []}  # looked up by _id only


def record_consent(
    db: Database, tenant_id: str, consented_by: str | None, scopes: list[str], now: datetime | None = None
) -> dict:
    """Record (or refresh) an admin consent for a tenant; the first consent time is kept as ``first_consented_at``."""
    now = now or utcnow()
    return db.tenants.find_one_and_update(
        {"_id": tenant_id},
        {
            "$set": {"consented_at": now, "consented_by": consented_by, "scopes": scopes},
            "$setOnInsert": {"first_consented_at": now},
        },
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )


def get(db: Database, tenant_id: str) -> dict | None:
    return db.tenants.find_one({"_id": tenant_id})
