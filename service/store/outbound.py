"""Outbound webhooks at rest: endpoints, the outbox of events, one delivery per (event, endpoint), and each
endpoint's bounded attempt log.

MongoDB is the source of truth; RQ jobs are only hints to look at a delivery now (``service.outbound``).
A delivery is attempted only by whoever claims it (``claim``: a compare-and-set on its lease), so a job run
twice, or a job and the sweep at once, send it once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from service.store import as_utc

EVENT_RETENTION = timedelta(days=7)     # for retries (24 h) and operators' replays after an outage
ATTEMPT_LOG_SIZE = 100                  # per endpoint, newest last
ACTIVE, PAUSED = "active", "paused"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

BY_STATUS_AND_DUE = "status_next_attempt"
BY_ENDPOINT_AND_CREATED = "endpoint_created"
BY_ENDPOINT_AND_EVENT = "endpoint_event"
BY_CREATED = "created_at"

INDEXES = {
    "outbound_endpoints": [IndexModel([("status", ASCENDING)], name="status")],
    "outbound_events": [
        IndexModel([("created_at", ASCENDING)], expireAfterSeconds=int(EVENT_RETENTION.total_seconds()),
                   name=BY_CREATED),
        IndexModel([("user_id", ASCENDING), ("sequence", ASCENDING)], name="user_sequence"),
    ],
    "outbound_deliveries": [
        IndexModel([("endpoint_id", ASCENDING), ("event_id", ASCENDING)], unique=True, name=BY_ENDPOINT_AND_EVENT),
        IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)], name=BY_STATUS_AND_DUE),
        IndexModel([("endpoint_id", ASCENDING), ("created_at", DESCENDING)], name=BY_ENDPOINT_AND_CREATED),
        IndexModel([("created_at", ASCENDING)], expireAfterSeconds=int(EVENT_RETENTION.total_seconds()),
                   name=BY_CREATED),
    ],
    "outbound_sequences": [],
}


# ------------------------------------------------------------------ endpoints

@dataclass(frozen=True)
class Secret:
    ciphertext: str                 # Fernet token of the whsec_ string (service.identity.crypto)
    created_at: datetime
    expires_at: datetime | None     # set on rotation: the old secret signs for 24 h more


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    event_types: tuple[str, ...]
    description: str
    status: str
    secrets: tuple[Secret, ...]
    created_at: datetime
    failing_since: datetime | None
    paused_reason: str | None
    paused_at: datetime | None
    last_success_at: datetime | None
    attempts: tuple[dict, ...]
    consecutive_failures: int = 0
    hold_until: datetime | None = None     # while failing: no attempt before this but the one probe

    @classmethod
    def from_doc(cls, doc: dict | None) -> Endpoint | None:
        if doc is None:
            return None
        secrets = tuple(Secret(s["ciphertext"], as_utc(s["created_at"]), as_utc(s.get("expires_at")))
                        for s in doc.get("secrets", []))
        return cls(doc["_id"], doc["url"], tuple(doc.get("event_types", [])), doc.get("description") or "",
                   doc.get("status", ACTIVE), secrets, as_utc(doc["created_at"]), as_utc(doc.get("failing_since")),
                   doc.get("paused_reason"), as_utc(doc.get("paused_at")), as_utc(doc.get("last_success_at")),
                   tuple(doc.get("attempts", [])), int(doc.get("consecutive_failures") or 0),
                   as_utc(doc.get("hold_until")))

    def live_secrets(self, now: datetime) -> list[Secret]:
        """The secrets that sign now: the current one first, a rotated one until it expires."""
        return [s for s in self.secrets if s.expires_at is None or s.expires_at > now]

    def wants(self, event_type: str) -> bool:
        return event_type in self.event_types


def insert_endpoint(db: Database, endpoint_id: str, url: str, event_types: list[str], description: str,
                    ciphertext: str, now: datetime) -> Endpoint:
    doc = {"_id": endpoint_id, "url": url, "event_types": event_types, "description": description, "status": ACTIVE,
           "secrets": [{"ciphertext": ciphertext, "created_at": now, "expires_at": None}], "created_at": now,
           "failing_since": None, "paused_reason": None, "paused_at": None, "last_success_at": None, "attempts": []}
    db.outbound_endpoints.insert_one(doc)
    return Endpoint.from_doc(doc)


def get_endpoint(db: Database, endpoint_id: str) -> Endpoint | None:
    return Endpoint.from_doc(db.outbound_endpoints.find_one({"_id": endpoint_id}))


def endpoints(db: Database) -> list[Endpoint]:
    return [Endpoint.from_doc(d) for d in db.outbound_endpoints.find({}).sort("created_at", ASCENDING)]


def endpoints_wanting(db: Database, event_type: str) -> list[Endpoint]:
    """Endpoints (active or paused) subscribed to ``event_type``; a small collection, read whole."""
    return [Endpoint.from_doc(d) for d in db.outbound_endpoints.find({"event_types": event_type},
                                                                     {"attempts": 0})]


def set_endpoint_status(db: Database, endpoint_id: str, status: str, reason: str | None, now: datetime) -> bool:
    changes = {"status": status, "paused_reason": reason if status == PAUSED else None,
               "paused_at": now if status == PAUSED else None}
    if status == ACTIVE:
        changes |= {"failing_since": None, "hold_until": None, "consecutive_failures": 0}  # three fresh days
    return db.outbound_endpoints.update_one({"_id": endpoint_id}, {"$set": changes}).matched_count == 1


def rotate_secret(db: Database, endpoint_id: str, ciphertext: str, now: datetime, keep_old: timedelta) -> bool:
    """Put a new secret first; the ones without an end now end after ``keep_old``; expired ones are dropped."""
    endpoint = get_endpoint(db, endpoint_id)
    if endpoint is None:
        return False
    kept = [{"ciphertext": s.ciphertext, "created_at": s.created_at, "expires_at": s.expires_at or now + keep_old}
            for s in endpoint.live_secrets(now)]
    secrets = [{"ciphertext": ciphertext, "created_at": now, "expires_at": None}, *kept]
    return db.outbound_endpoints.update_one({"_id": endpoint_id}, {"$set": {"secrets": secrets}}).matched_count == 1


def replace_secret(db: Database, endpoint_id: str, old: str, new: str) -> bool:
    """Swap one stored ciphertext for another (key rotation); False if it changed meanwhile."""
    result = db.outbound_endpoints.update_one({"_id": endpoint_id, "secrets.ciphertext": old},
                                              {"$set": {"secrets.$.ciphertext": new}})
    return result.modified_count == 1


def delete_endpoint(db: Database, endpoint_id: str) -> bool:
    db.outbound_deliveries.delete_many({"endpoint_id": endpoint_id})
    return db.outbound_endpoints.delete_one({"_id": endpoint_id}).deleted_count == 1


def record_attempt(db: Database, endpoint_id: str, attempt: dict, ok: bool, now: datetime,
                   hold_until: datetime | None = None) -> None:
    """Append to the endpoint's attempt log (the last ATTEMPT_LOG_SIZE kept) and track how long it has failed:
    a success clears it all; a failure counts, holds other deliveries until ``hold_until``, and starts
    ``failing_since`` if it was not failing."""
    update: dict = {"$push": {"attempts": {"$each": [attempt], "$slice": -ATTEMPT_LOG_SIZE}}}
    if ok:
        update["$set"] = {"failing_since": None, "last_success_at": now, "consecutive_failures": 0,
                          "hold_until": None}
    else:
        update["$set"] = {"hold_until": hold_until}
        update["$inc"] = {"consecutive_failures": 1}
    db.outbound_endpoints.update_one({"_id": endpoint_id}, update)
    if not ok:
        db.outbound_endpoints.update_one({"_id": endpoint_id, "failing_since": None}, {"$set": {"failing_since": now}})


def take_probe(db: Database, endpoint_id: str, now: datetime, lease: timedelta) -> bool:
    """A failing endpoint is tried by one delivery at a time once its hold is over (a circuit breaker's
    half-open state); True if this caller may attempt now."""
    result = db.outbound_endpoints.update_one(
        {"_id": endpoint_id, "$or": [{"hold_until": None}, {"hold_until": {"$lte": now}}]},
        {"$set": {"hold_until": now + lease}})
    return result.modified_count == 1


def pause_if_failing_since(db: Database, endpoint_id: str, cutoff: datetime, reason: str, now: datetime) -> bool:
    """Pause an active endpoint that has failed without a success since before ``cutoff``; True if this did."""
    result = db.outbound_endpoints.update_one(
        {"_id": endpoint_id, "status": ACTIVE, "failing_since": {"$ne": None, "$lte": cutoff}},
        {"$set": {"status": PAUSED, "paused_reason": reason, "paused_at": now}})
    return result.modified_count == 1


def failing_endpoint_ids(db: Database, cutoff: datetime) -> list[str]:
    found = db.outbound_endpoints.find({"status": ACTIVE, "failing_since": {"$ne": None, "$lte": cutoff}}, {"_id": 1})
    return [d["_id"] for d in found]


# ------------------------------------------------------------------ the outbox

def next_sequence(db: Database, user_id: str) -> int:
    """The user's next event number: strictly increasing in the order events are emitted."""
    doc = db.outbound_sequences.find_one_and_update({"_id": user_id}, {"$inc": {"value": 1}}, upsert=True,
                                                    return_document=ReturnDocument.AFTER)
    return int(doc["value"])


def insert_event(db: Database, event_id: str, event_type: str, user_id: str, sequence: int, body: str,
                 now: datetime) -> None:
    db.outbound_events.insert_one({"_id": event_id, "type": event_type, "user_id": user_id, "sequence": sequence,
                                   "body": body, "created_at": now})


def get_event(db: Database, event_id: str) -> dict | None:
    return db.outbound_events.find_one({"_id": event_id})


def events_between(db: Database, types: tuple[str, ...], start: datetime, end: datetime, limit: int) -> list[dict]:
    found = db.outbound_events.find({"created_at": {"$gte": start, "$lt": end}, "type": {"$in": list(types)}},
                                    {"body": 0}).sort("created_at", ASCENDING).hint(BY_CREATED)
    return list(found.limit(limit))


def events_for_user(db: Database, user_id: str) -> list[dict]:
    """The events about a user still in the outbox (their data export): id, type, sequence, time, payload."""
    found = db.outbound_events.find({"user_id": user_id}).sort("sequence", ASCENDING).hint("user_sequence")
    return [{"id": e["_id"], "type": e["type"], "sequence": e["sequence"], "created_at": e["created_at"],
             "data": json.loads(e["body"]).get("data")} for e in found]


def delete_events_for_user(db: Database, user_id: str, keep_types: tuple[str, ...] = ()) -> int:
    """Forget a user's outbox and its deliveries (deleting all their data), except events of ``keep_types``."""
    found = db.outbound_events.find({"user_id": user_id}, {"_id": 1, "type": 1})
    ids = [d["_id"] for d in found if d["type"] not in keep_types]
    if not ids:
        return 0
    db.outbound_deliveries.delete_many({"event_id": {"$in": ids}})
    return db.outbound_events.delete_many({"_id": {"$in": ids}}).deleted_count


# ------------------------------------------------------------------ deliveries

def insert_delivery(db: Database, delivery_id: str, endpoint_id: str, event: dict, now: datetime,
                    retry_for: timedelta) -> bool:
    """A pending delivery of ``event`` to the endpoint, due now; False if one exists already."""
    try:
        db.outbound_deliveries.insert_one({
            "_id": delivery_id, "endpoint_id": endpoint_id, "event_id": event["_id"], "type": event["type"],
            "user_id": event["user_id"], "sequence": event["sequence"], "status": PENDING, "attempts": 0,
            "created_at": now, "next_attempt_at": now, "retry_until": now + retry_for, "claimed_until": None,
            "last_status": None, "last_error": None, "delivered_at": None})
    except DuplicateKeyError:
        return False
    return True


def get_delivery(db: Database, delivery_id: str) -> dict | None:
    return db.outbound_deliveries.find_one({"_id": delivery_id})


def claim(db: Database, delivery_id: str, now: datetime, lease: timedelta) -> dict | None:
    """Take a due pending delivery for one attempt (None: not due, done, or someone else has it)."""
    return db.outbound_deliveries.find_one_and_update(
        {"_id": delivery_id, "status": PENDING, "next_attempt_at": {"$lte": now},
         "$or": [{"claimed_until": None}, {"claimed_until": {"$lte": now}}]},
        {"$set": {"claimed_until": now + lease}}, return_document=ReturnDocument.AFTER)


def release(db: Database, delivery_id: str, next_attempt_at: datetime | None = None) -> None:
    changes: dict = {"claimed_until": None}
    if next_attempt_at is not None:
        changes["next_attempt_at"] = next_attempt_at
    db.outbound_deliveries.update_one({"_id": delivery_id}, {"$set": changes})


def finish_attempt(db: Database, delivery_id: str, status: str, http_status: int | None, error: str | None,
                   now: datetime, next_attempt_at: datetime | None) -> None:
    changes = {"status": status, "last_status": http_status, "last_error": error, "last_attempt_at": now,
               "claimed_until": None}
    if status == DELIVERED:
        changes["delivered_at"] = now
    if next_attempt_at is not None:
        changes["next_attempt_at"] = next_attempt_at
    db.outbound_deliveries.update_one({"_id": delivery_id}, {"$set": changes, "$inc": {"attempts": 1}})


def expire(db: Database, delivery_id: str, error: str, now: datetime) -> None:
    db.outbound_deliveries.update_one({"_id": delivery_id}, {"$set": {
        "status": FAILED, "last_error": error, "claimed_until": None, "last_attempt_at": now}})


def due_ids(db: Database, now: datetime, limit: int, exclude_endpoints: set[str] = frozenset()) -> list[str]:
    """Pending deliveries whose time has come (the sweep's catch-up for jobs that were lost), leaving out
    those of the endpoints named (paused ones)."""
    query: dict = {"status": PENDING, "next_attempt_at": {"$lte": now}}
    if exclude_endpoints:
        query["endpoint_id"] = {"$nin": sorted(exclude_endpoints)}
    found = db.outbound_deliveries.find(query, {"_id": 1})
    return [d["_id"] for d in found.sort("next_attempt_at", ASCENDING).hint(BY_STATUS_AND_DUE).limit(limit)]


def pending_schedule(db: Database, limit: int, exclude_endpoints: set[str] = frozenset()) -> list[tuple[str, datetime]]:
    """Pending deliveries and when each is next due, soonest first (what the outbox had scheduled in Redis),
    leaving out those of the endpoints named (paused ones)."""
    query: dict = {"status": PENDING}
    if exclude_endpoints:
        query["endpoint_id"] = {"$nin": sorted(exclude_endpoints)}
    found = db.outbound_deliveries.find(query, {"next_attempt_at": 1}).sort("next_attempt_at", ASCENDING)
    return [(d["_id"], as_utc(d["next_attempt_at"])) for d in found.hint(BY_STATUS_AND_DUE).limit(limit)]


def deliveries_for(db: Database, endpoint_id: str, limit: int, status: str | None = None) -> list[dict]:
    query: dict = {"endpoint_id": endpoint_id}
    if status:
        query["status"] = status
    found = db.outbound_deliveries.find(query).sort("created_at", DESCENDING).hint(BY_ENDPOINT_AND_CREATED)
    return list(found.limit(limit))


def counts_for(db: Database, endpoint_id: str) -> dict[str, int]:
    return {status: db.outbound_deliveries.count_documents({"endpoint_id": endpoint_id, "status": status})
            for status in (PENDING, DELIVERED, FAILED)}


def rearm(db: Database, delivery_id: str, now: datetime, retry_for: timedelta) -> bool:
    """Replay: make a delivery pending and due now, with a fresh retry window (its attempt count goes on)."""
    result = db.outbound_deliveries.update_one({"_id": delivery_id}, {"$set": {
        "status": PENDING, "next_attempt_at": now, "retry_until": now + retry_for, "claimed_until": None}})
    return result.matched_count == 1


def delivery_for(db: Database, endpoint_id: str, event_id: str) -> dict | None:
    return db.outbound_deliveries.find_one({"endpoint_id": endpoint_id, "event_id": event_id})

