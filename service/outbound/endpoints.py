"""The endpoints operators register (ops API, ``/ops/webhooks``, ``calsync webhooks``): create, list, pause,
resume, remove, rotate the secret, and replay deliveries.

A secret is shown once, when it is made (creation, rotation); it is stored encrypted with the token keys
(``CALSYNC_TOKEN_KEYS``, MultiFernet, so ``calsync rotate-keys``' key list applies). A rotation keeps the
old secret signing for 24 h beside the new one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.database import Database
from redis import Redis

from service import outbox
from service.config import Settings
from service.identity import crypto
from service.outbound import http, signing
from service.store import outbound as store
from service.store import utcnow

OLD_SECRET_VALID = timedelta(hours=24)
MAX_DESCRIPTION = 500
MAX_REPLAY = 10_000


class InvalidEndpoint(ValueError):
    """The request cannot be honoured; the message is safe to show."""


@dataclass(frozen=True)
class Created:
    endpoint: store.Endpoint
    secret: str        # whsec_…; shown to the operator this once, never again


def register(db: Database, settings: Settings, url: object, event_types: object, description: object = "",
             now: datetime | None = None) -> Created:
    """Vet and store a new endpoint (InvalidEndpoint on bad input)."""
    try:
        http.check(url, settings.public_url, settings.outbound_allow_private)
    except http.RefusedUrl as exc:
        raise InvalidEndpoint(str(exc)) from None
    types = _event_types(event_types)
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidEndpoint(f"description must be text of at most {MAX_DESCRIPTION} characters")
    secret = signing.new_secret()
    endpoint = store.insert_endpoint(db, f"ep_{uuid.uuid4().hex[:20]}", url, types, description.strip(),
                                     crypto.encrypt(settings, secret), now or utcnow())
    return Created(endpoint, secret)


def _event_types(value: object) -> list[str]:
    if value is None:
        return list(outbox.EVENT_TYPES)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidEndpoint(f"event_types must be a non-empty list of: {', '.join(outbox.EVENT_TYPES)}")
    unknown = sorted(set(value) - set(outbox.EVENT_TYPES))
    if unknown:
        raise InvalidEndpoint(f"unknown event type(s) {', '.join(unknown)[:200]}; known: "
                              f"{', '.join(outbox.EVENT_TYPES)}")
    return [t for t in outbox.EVENT_TYPES if t in value]


def rotate(db: Database, settings: Settings, endpoint_id: str, now: datetime | None = None) -> str | None:
    """A new secret (returned, shown once); the previous one keeps signing for 24 h. None if no such endpoint."""
    secret = signing.new_secret()
    if not store.rotate_secret(db, endpoint_id, crypto.encrypt(settings, secret), now or utcnow(), OLD_SECRET_VALID):
        return None
    return secret


def pause(db: Database, endpoint_id: str, now: datetime | None = None) -> bool:
    return store.set_endpoint_status(db, endpoint_id, store.PAUSED, "paused by an operator", now or utcnow())


def resume(db: Database, redis: Redis, endpoint_id: str, now: datetime | None = None) -> bool:
    """Active again; what was pending is attempted at once (what failed meanwhile needs a replay)."""
    if not store.set_endpoint_status(db, endpoint_id, store.ACTIVE, None, now or utcnow()):
        return False
    for delivery in store.deliveries_for(db, endpoint_id, MAX_REPLAY, store.PENDING):
        outbox.schedule(redis, delivery["_id"])
    return True


def remove(db: Database, endpoint_id: str) -> bool:
    return store.delete_endpoint(db, endpoint_id)


def replay_delivery(db: Database, redis: Redis, endpoint_id: str, delivery_id: str,
                    now: datetime | None = None) -> bool:
    """Send one delivery again (same ``webhook-id``, a fresh 24 h of retries); False if it is not this endpoint's."""
    delivery = store.get_delivery(db, delivery_id)
    if delivery is None or delivery["endpoint_id"] != endpoint_id:
        return False
    if store.get_event(db, delivery["event_id"]) is None:
        raise InvalidEndpoint("that delivery's event is older than the outbox keeps (7 days)")
    store.rearm(db, delivery_id, now or utcnow(), outbox.RETRY_FOR)
    outbox.schedule(redis, delivery_id)
    return True


def replay_range(db: Database, redis: Redis, endpoint: store.Endpoint, start: datetime, end: datetime,
                 now: datetime | None = None) -> int:
    """Send again every event of the endpoint's types emitted in [start, end) (those it missed too, e.g. while
    paused); returns how many were queued."""
    if end <= start:
        raise InvalidEndpoint("until must be after since")
    now = now or utcnow()
    queued = 0
    for event in store.events_between(db, endpoint.event_types, start, end, MAX_REPLAY):
        existing = store.delivery_for(db, endpoint.id, event["_id"])
        if existing is None:
            queued += outbox.add_delivery(db, redis, endpoint.id, event, now) is not None
        else:
            store.rearm(db, existing["_id"], now, outbox.RETRY_FOR)
            queued += outbox.schedule(redis, existing["_id"])
    return queued


def rotate_keys(db: Database, settings: Settings) -> tuple[int, int]:
    """``calsync rotate-keys`` for endpoint secrets: each re-encrypted under the first token key; returns
    (rotated, unreadable). An unreadable one is left as is (its deliveries fail until the secret is rotated)."""
    rotated = unreadable = 0
    for endpoint in store.endpoints(db):
        for secret in endpoint.secrets:
            try:
                fresh = crypto.rotate(settings, secret.ciphertext)
            except crypto.CacheUnreadable:
                unreadable += 1
                continue
            rotated += store.replace_secret(db, endpoint.id, secret.ciphertext, fresh)
    return rotated, unreadable


def health(endpoint: store.Endpoint) -> str:
    """What an operator should read: ``paused``, ``failing`` (active, but its latest attempts failed: it is being
    retried and probed) or ``active`` (delivering)."""
    if endpoint.status == store.PAUSED:
        return "paused"
    return "failing" if endpoint.failing_since is not None else "active"


def describe(db: Database, endpoint: store.Endpoint, attempts: int = 0) -> dict:
    """The endpoint as operators see it (never its secrets); ``attempts`` newest entries of its log."""
    body = {
        "id": endpoint.id, "url": endpoint.url, "event_types": list(endpoint.event_types),
        "description": endpoint.description, "status": endpoint.status, "health": health(endpoint),
        "consecutive_failures": endpoint.consecutive_failures, "paused_reason": endpoint.paused_reason,
        "paused_at": outbox.iso(endpoint.paused_at), "failing_since": outbox.iso(endpoint.failing_since),
        "last_success_at": outbox.iso(endpoint.last_success_at), "created_at": outbox.iso(endpoint.created_at),
        "secrets": [{"created_at": outbox.iso(s.created_at), "expires_at": outbox.iso(s.expires_at)}
                    for s in endpoint.live_secrets(utcnow())],
        "deliveries": store.counts_for(db, endpoint.id),
    }
    if attempts:
        body["attempts"] = [attempt_json(a) for a in reversed(endpoint.attempts[-attempts:])]
    return body


def attempt_json(entry: dict) -> dict:
    return {"at": outbox.iso(entry.get("at")), "delivery_id": entry.get("delivery_id"),
            "event_id": entry.get("event_id"), "type": entry.get("type"), "attempt": entry.get("attempt"),
            "status": entry.get("status"), "duration_ms": entry.get("duration_ms"), "error": entry.get("error"),
            "ok": bool(entry.get("ok"))}


def delivery_json(delivery: dict) -> dict:
    return {"id": delivery["_id"], "event_id": delivery["event_id"], "type": delivery["type"],
            "user_id": delivery["user_id"], "sequence": delivery["sequence"], "status": delivery["status"],
            "attempts": delivery["attempts"], "created_at": outbox.iso(delivery["created_at"]),
            "next_attempt_at": outbox.iso(delivery.get("next_attempt_at")) if delivery["status"] == "pending" else None,
            "last_status": delivery.get("last_status"), "last_error": delivery.get("last_error"),
            "delivered_at": outbox.iso(delivery.get("delivered_at"))}
