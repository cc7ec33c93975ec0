"""Tenant-wide connection: the tenant's settings (on its ``tenants`` document, under ``tenant_wide``), its
directory as ``/users/delta`` reports it (``directory``: one document per Entra object id), and the people of
the tenant as its admin sees them (the ``users`` documents, by ``tenant_id``).

``tenants.tenant_wide``: ``{mode: "per_user" | "tenant_wide", enrolment: "everyone" | "group" | "directory",
group_id, opt: "opt_out" | "opt_in", delta_link, directory_synced_at, admin_email, consent_lost_mail_at,
scope_changed_at, disconnecting_since}`` (``disconnecting_since``: set while a disconnection purges the
tenant's people, job by job).
``directory``: ``{_id: object id, tenant_id, mail, upn, display_name, enabled, user_type, removed, seen_at}``.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.database import Database

from service.store import as_utc, utcnow
from service.store.records import APP_SOURCE, USER_SOURCE, ConnectionStatus, connection_words

INDEXES = {
    "directory": [IndexModel([("tenant_id", ASCENDING), ("mail", ASCENDING)], name="tenant_mail")],
    "users": [IndexModel([("tenant_id", ASCENDING), ("email", ASCENDING)], name="tenant_email")],
}
MODES = ("per_user", "tenant_wide")
ENROLMENTS = ("everyone", "group", "directory")
OPTS = ("opt_out", "opt_in")
DEFAULTS = {"mode": "per_user", "enrolment": "everyone", "group_id": None, "opt": "opt_out"}


def settings(db: Database, tenant_id: str) -> dict:
    found = db.tenants.find_one({"_id": tenant_id}, {"tenant_wide": 1}) or {}
    return DEFAULTS | (found.get("tenant_wide") or {})


def update_settings(db: Database, tenant_id: str, changes: dict, now: datetime | None = None) -> dict:
    """Set some of mode / enrolment / group_id / opt / admin_email (already validated); returns the settings."""
    fields = {f"tenant_wide.{k}": v for k, v in changes.items()}
    db.tenants.update_one({"_id": tenant_id}, {"$set": fields | {"tenant_wide.updated_at": now or utcnow()}},
                          upsert=True)
    return settings(db, tenant_id)


def tenants_in_mode(db: Database, mode: str = "tenant_wide") -> list[str]:
    return [doc["_id"] for doc in db.tenants.find({"tenant_wide.mode": mode}, {"_id": 1})]


def tenants_disconnecting(db: Database) -> list[str]:
    """Tenants whose disconnection has not purged everyone yet."""
    return [doc["_id"] for doc in db.tenants.find({"tenant_wide.disconnecting_since": {"$ne": None}}, {"_id": 1})]


def tenants_still_leaving(db: Database) -> list[str]:
    """Tenants switched to per-user (not disconnecting) that still have someone read with the app token."""
    switched = db.tenants.find({"tenant_wide.mode": "per_user", "tenant_wide.disconnecting_since": None}, {"_id": 1})
    return [doc["_id"] for doc in switched if db.users.find_one(_read_with_app(doc["_id"]), {"_id": 1})]


def _read_with_app(tenant_id: str) -> dict:
    return {"tenant_id": tenant_id, "token_source": APP_SOURCE,
            "connection.status": {"$ne": ConnectionStatus.DISCONNECTED.value}}


def read_with_app_ids(db: Database, tenant_id: str) -> list[str]:
    """The tenant's people read with the app token (every tenant-wide person but the disconnected)."""
    return [d["_id"] for d in db.users.find(_read_with_app(tenant_id), {"_id": 1})]


def claim_consent_lost_mail(db: Database, tenant_id: str, now: datetime | None = None) -> dict | None:
    """Claim the one "consent is gone" mail of this loss (cleared when the admin consents again)."""
    return db.tenants.find_one_and_update(
        {"_id": tenant_id, "tenant_wide.consent_lost_mail_at": None},
        {"$set": {"tenant_wide.consent_lost_mail_at": now or utcnow()}})


def clear_consent_lost(db: Database, tenant_id: str) -> None:
    db.tenants.update_one({"_id": tenant_id}, {"$set": {"tenant_wide.consent_lost_mail_at": None}})


# ------------------------------------------------------------ the directory (users/delta)

def apply_delta(db: Database, tenant_id: str, entries: list[dict], now: datetime | None = None) -> int:
    """Store one page of ``/users/delta`` (mapped by object id; ``@removed`` marks a deletion)."""
    now = now or utcnow()
    writes = []
    for entry in entries:
        object_id = entry.get("id")
        if not isinstance(object_id, str):
            continue
        if "@removed" in entry:
            writes.append(UpdateOne({"_id": object_id, "tenant_id": tenant_id},
                                    {"$set": {"removed": True, "seen_at": now}}))
            continue
        fields = {"tenant_id": tenant_id, "removed": False, "seen_at": now}
        for source, target in (("mail", "mail"), ("userPrincipalName", "upn"), ("displayName", "display_name"),
                               ("accountEnabled", "enabled"), ("userType", "user_type")):
            if source in entry:   # a delta entry carries only what changed
                value = entry[source]
                fields[target] = value.lower() if target in ("mail", "upn") and isinstance(value, str) else value
        writes.append(UpdateOne({"_id": object_id}, {"$set": fields}, upsert=True))
    if writes:
        db.directory.bulk_write(writes, ordered=False)
    return len(writes)


def save_delta_link(db: Database, tenant_id: str, link: str | None, now: datetime | None = None) -> None:
    db.tenants.update_one({"_id": tenant_id}, {"$set": {"tenant_wide.delta_link": link,
                                                          "tenant_wide.directory_synced_at": now or utcnow()}},
                          upsert=True)


def members(db: Database, tenant_id: str) -> list[dict]:
    """The tenant's directory (removed ones too: they leave)."""
    return list(db.directory.find({"tenant_id": tenant_id}))


def member(db: Database, object_id: str) -> dict | None:
    return db.directory.find_one({"_id": object_id})


def forget_directory(db: Database, tenant_id: str) -> int:
    return db.directory.delete_many({"tenant_id": tenant_id}).deleted_count


# ------------------------------------------------------------ people (users documents) of a tenant

ENROL_FIELDS = {"connection.status": 1, "token_source": 1, "opted_out_at": 1, "opted_in_at": 1}


def enrol(db: Database, tenant_id: str, entry: dict, now: datetime | None = None) -> tuple[str, dict | None]:
    """Make a directory member a tenant-wide mailbox. Returns what happened and the document before:
    "new" (no document), "switched" (read with their own token until now), "resumed" (waited for the admin or
    was disconnected), "unchanged"."""
    before = db.users.find_one({"_id": entry["_id"]}, ENROL_FIELDS)
    (what,) = enrol_many(db, tenant_id, [(entry, before)], now)
    return what, before


def enrol_many(db: Database, tenant_id: str, pairs: list[tuple[dict, dict | None]],
               now: datetime | None = None) -> list[str]:
    """``enrol`` for many members at once, each with its users document as read before (``ENROL_FIELDS``, or
    None): one bulk write. Returns what happened to each, in order."""
    now = now or utcnow()
    outcomes, writes = [], []
    for entry, before in pairs:
        if before is None:
            email = (entry.get("mail") or entry.get("upn") or "").lower()
            writes.append(UpdateOne({"_id": entry["_id"]}, {"$setOnInsert": {
                "tenant_id": tenant_id, "email": email, "display_name": entry.get("display_name") or email,
                "entra_id": entry["_id"], "token_source": APP_SOURCE, "created_at": now, "updated_at": now,
                "graph_ids": "immutable", "time_zone": None,
                "digest": {"enabled": True, "time": None, "send_empty": False}, "sync": {"error_count": 0},
                "connection": {"status": ConnectionStatus.CONNECTED.value, "reason": "tenant_wide", "since": now}}},
                upsert=True))
            outcomes.append("new")
            continue
        status = (before.get("connection") or {}).get("status")
        source = before.get("token_source") or USER_SOURCE
        changes: dict = {"token_source": APP_SOURCE, "entra_id": entry["_id"], "updated_at": now}
        if status in (ConnectionStatus.NEEDS_ADMIN.value, ConnectionStatus.DISCONNECTED.value,
                      ConnectionStatus.NEEDS_RECONNECT.value, None):
            changes |= {"connection.status": ConnectionStatus.CONNECTED.value, "connection.reason": "tenant_wide",
                        "connection.since": now}
            writes.append(UpdateOne({"_id": entry["_id"]}, {"$set": changes}))
            outcomes.append("resumed")
        elif source != APP_SOURCE:
            writes.append(UpdateOne({"_id": entry["_id"]}, {"$set": changes}))
            outcomes.append("switched")
        else:
            outcomes.append("unchanged")
    if writes:
        db.users.bulk_write(writes, ordered=False)
    return outcomes


def users_for(db: Database, user_ids: list[str], fields: dict) -> dict[str, dict]:
    """The users documents of these ids (those that exist), with ``fields`` only: one query."""
    return {doc["_id"]: doc for doc in db.users.find({"_id": {"$in": user_ids}}, fields)} if user_ids else {}


def set_source(db: Database, user_id: str, source: str, now: datetime | None = None) -> None:
    db.users.update_one({"_id": user_id}, {"$set": {"token_source": source, "updated_at": now or utcnow()}})


def app_user_ids(db: Database, tenant_id: str) -> list[str]:
    return [d["_id"] for d in db.users.find({"tenant_id": tenant_id, "token_source": APP_SOURCE}, {"_id": 1})]


def count_app_users(db: Database, tenant_id: str) -> int:
    return db.users.count_documents({"tenant_id": tenant_id, "token_source": APP_SOURCE})


def user_ids(db: Database, tenant_id: str) -> list[str]:
    return [d["_id"] for d in db.users.find({"tenant_id": tenant_id}, {"_id": 1})]


def needs_admin_ids(db: Database, tenant_id: str) -> list[str]:
    return [d["_id"] for d in db.users.find({"tenant_id": tenant_id, "token_source": APP_SOURCE,
                                             "connection.status": ConnectionStatus.NEEDS_ADMIN.value}, {"_id": 1})]


def record_opt_out(db: Database, user_id: str, tenant_id: str | None, email: str, now: datetime | None = None) -> None:
    """What stays of a person who opted out: who they are and when, so no enrolment brings them back."""
    now = now or utcnow()
    db.users.update_one({"_id": user_id}, {"$set": {
        "tenant_id": tenant_id, "email": email, "entra_id": user_id, "opted_out_at": now, "updated_at": now,
        "connection": {"status": ConnectionStatus.DISCONNECTED.value, "reason": "opted_out", "since": now}},
        "$setOnInsert": {"created_at": now}}, upsert=True)


def record_opt_in(db: Database, user_id: str, now: datetime | None = None) -> None:
    db.users.update_one({"_id": user_id}, {"$set": {"opted_in_at": now or utcnow()}, "$unset": {"opted_out_at": ""}})


def record_scope(db: Database, user_id: str, state: str, code: str | None, now: datetime | None = None) -> None:
    """The scope checker's verdict for a mailbox: in_scope, out_of_scope, no_mailbox, invalid."""
    db.users.update_one({"_id": user_id}, {"$set": {"scope": {"state": state, "code": code,
                                                              "checked_at": now or utcnow()}}})


PERSON_FIELDS = {"email": 1, "display_name": 1, "token_source": 1, "connection": 1, "opted_out_at": 1,
                 "sync.last_sync_at": 1, "scope": 1, "has_user_grant": 1}


def person(doc: dict) -> dict:
    """One person of a tenant (a ``PERSON_FIELDS`` document) as the admin views show it. ``state`` is a key of
    ``counts``: opted_out, tenant_wide, per_user, or the connection status."""
    connection = doc.get("connection") or {}
    status = connection.get("status")
    if doc.get("opted_out_at"):
        state = "opted_out"
    elif status == ConnectionStatus.CONNECTED.value:
        state = "tenant_wide" if doc.get("token_source") == APP_SOURCE else "per_user"
    else:
        state = status or "unknown"
    last = (doc.get("sync") or {}).get("last_sync_at")
    return {"user_id": doc["_id"], "email": doc.get("email") or "", "name": doc.get("display_name") or "",
            "state": state, "reason": connection.get("reason") if status != ConnectionStatus.CONNECTED.value else None,
            "scope": (doc.get("scope") or {}).get("state"), "last_sync_at": last.isoformat() if last else None}


def disconnection(config: dict, counts: dict) -> dict | None:
    """While a disconnection purges the tenant's people: since when (ISO 8601) and how many are left."""
    since = config.get("disconnecting_since")
    return {"since": as_utc(since).isoformat().replace("+00:00", "Z"), "left": counts["total"]} if since else None


PERSON_STATE_WORDS = {"opted_out": "opted out", "tenant_wide": "synced tenant-wide", "per_user": "synced per user"}


def person_state_words(state: str) -> str:
    return PERSON_STATE_WORDS.get(state) or connection_words(state)


def people_page(db: Database, tenant_id: str, search: str, after: str | None, limit: int) -> list[dict]:
    """One page of the tenant's people by email (the tenant_email index), optionally only emails starting with
    ``search``; ``after`` is the last email of the previous page."""
    bounds: dict = {}
    prefix = search.strip().lower()
    if prefix:
        bounds["$gte"] = prefix
        if ord(prefix[-1]) < 0x10FFFF:
            bounds["$lt"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    if after:
        bounds["$gt"] = after
        if after >= prefix:
            bounds.pop("$gte", None)
    query: dict = {"tenant_id": tenant_id}
    if bounds:
        query["email"] = bounds
    return list(db.users.find(query, PERSON_FIELDS).sort("email", ASCENDING).limit(limit))


def people_all(db: Database, tenant_id: str):
    return db.users.find({"tenant_id": tenant_id}, PERSON_FIELDS).sort("email", ASCENDING)


def counts(db: Database, tenant_id: str) -> dict:
    """How many people per state: synced per user / tenant-wide, needs reconnect, needs admin, opted out,
    cannot sync, disconnected (each an indexed count on the tenant)."""
    base = {"tenant_id": tenant_id}
    live = base | {"opted_out_at": None}
    connected = live | {"connection.status": ConnectionStatus.CONNECTED.value}
    result = {"total": db.users.count_documents(base),
              "tenant_wide": db.users.count_documents(connected | {"token_source": APP_SOURCE}),
              "opted_out": db.users.count_documents(base | {"opted_out_at": {"$ne": None}})}
    result["per_user"] = db.users.count_documents(connected) - result["tenant_wide"]
    for status in (ConnectionStatus.NEEDS_RECONNECT, ConnectionStatus.NEEDS_ADMIN, ConnectionStatus.CANNOT_SYNC,
                   ConnectionStatus.DISCONNECTED):
        result[status.value] = db.users.count_documents(live | {"connection.status": status.value})
    return result
