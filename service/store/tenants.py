"""Tenants: admin consent records ``{_id: tenant_id, consented_at, consented_by, scopes}``, and the domains an
operator says belong to the organization (``domains``: lower-case names; a tenant may have them without a
consent record)."""

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


def set_domains(db: Database, tenant_id: str, domains: list[str]) -> list[str]:
    """Replace the operator-configured domains of a tenant (already validated, lower-case); returns them."""
    cleaned = sorted(set(domains))
    db.tenants.update_one({"_id": tenant_id}, {"$set": {"domains": cleaned, "domains_updated_at": utcnow()}},
                          upsert=True)
    return cleaned


def domains(db: Database, tenant_id: str | None) -> list[str]:
    """The operator-configured domains of a tenant (none when unknown)."""
    if not tenant_id:
        return []
    found = db.tenants.find_one({"_id": tenant_id}, {"domains": 1}) or {}
    return [d for d in found.get("domains") or [] if isinstance(d, str)]


def with_domains(db: Database) -> list[dict]:
    """Every tenant that has configured domains, for operators (a handful of documents)."""
    return list(db.tenants.find({"domains.0": {"$exists": True}}, {"domains": 1}).sort("_id", 1))
