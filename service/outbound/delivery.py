"""Attempt one delivery: claim it, sign it with the endpoint's live secrets, POST it, record the attempt,
and decide what comes next.

A 2xx within the timeout is success. Anything else is retried with exponential back-off and jitter
(about 30 s, 1 min, 2 min, … capped at 4 h) until 24 h after the delivery was created or replayed, then
given up (``failed``; operators can replay it). While an endpoint is failing, its other deliveries wait
for the same back-off (the endpoint's ``hold_until``) and one at a time probes it, so a receiver that is
down or times out costs one attempt per back-off, not one per event. An endpoint that has failed every
attempt for 3 days is paused and shown to operators. Secrets and URLs never reach the logs: they name
endpoint and delivery ids.
"""

from __future__ import annotations

import logging
import random
import ssl
from datetime import datetime, timedelta

from pymongo.database import Database
from redis import Redis

from service import outbox
from service.config import Settings
from service.identity import crypto
from service.outbound import http, signing
from service.store import as_utc, utcnow
from service.store import outbound as store

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 4 * 3600
MAX_HOLD_SECONDS = 1800     # a failing endpoint is probed at least every 30 min, so its recovery is seen
PAUSE_AFTER = timedelta(days=3)
LEASE_MARGIN_SECONDS = 20
SWEEP_GRACE = timedelta(seconds=30)   # scheduled retries normally run on time; the sweep takes the late ones
SWEEP_BATCH = 1_000


def backoff(failures: int, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after ``failures`` failed ones: doubling from 30 s, capped at 4 h,
    each spread ±25% so that many deliveries failing together do not come back together."""
    base = min(FIRST_RETRY_SECONDS * 2 ** (max(failures, 1) - 1), MAX_RETRY_SECONDS)
    return base * (rng or random).uniform(0.75, 1.25)  # noqa: S311 - jitter, not a secret


def attempt(db: Database, redis: Redis, settings: Settings, context: ssl.SSLContext, delivery_id: str,
            now: datetime | None = None) -> str:
    """One attempt at a delivery if it is due and nobody else is at it; returns what happened."""
    now = now or utcnow()
    lease = timedelta(seconds=settings.outbound_timeout + LEASE_MARGIN_SECONDS)
    delivery = store.claim(db, delivery_id, now, lease)
    if delivery is None:
        return "not-due"
    endpoint = store.get_endpoint(db, delivery["endpoint_id"])
    event = store.get_event(db, delivery["event_id"])
    if endpoint is None or event is None:
        store.expire(db, delivery_id, "endpoint removed" if endpoint is None else "event expired", now)
        return "gone"
    if endpoint.status != store.ACTIVE:
        store.release(db, delivery_id)
        return "paused"
    if now >= as_utc(delivery["retry_until"]):
        store.expire(db, delivery_id, "gave up: not delivered within 24 h", now)
        return "expired"
    if endpoint.failing_since is not None and not store.take_probe(db, endpoint.id, now, lease):
        return _hold(db, redis, delivery_id, endpoint, now)
    answer = _send(settings, context, endpoint, event, now)
    hold = None if answer.ok else now + timedelta(
        seconds=min(backoff(endpoint.consecutive_failures + 1), MAX_HOLD_SECONDS))
    _record(db, endpoint, delivery, answer, now, hold)
    if answer.ok:
        store.finish_attempt(db, delivery_id, store.DELIVERED, answer.status, None, now, None)
        return "delivered"
    next_at = max(now + timedelta(seconds=backoff(delivery["attempts"] + 1)), hold)
    if next_at >= as_utc(delivery["retry_until"]):
        store.finish_attempt(db, delivery_id, store.FAILED, answer.status, answer.error, now, None)
        log.warning("outbound delivery %s to endpoint %s given up after %d attempts", delivery_id, endpoint.id,
                    delivery["attempts"] + 1)
    else:
        store.finish_attempt(db, delivery_id, store.PENDING, answer.status, answer.error, now, next_at)
        outbox.schedule(redis, delivery_id, next_at)
    pause_if_failing(db, endpoint.id, now)
    return "failed" if answer.status is None else f"failed:{answer.status}"


def _send(settings: Settings, context: ssl.SSLContext, endpoint: store.Endpoint, event: dict,
          now: datetime) -> http.Answer:
    try:
        parts, address = http.check(endpoint.url, settings.public_url, settings.outbound_allow_private)
    except http.RefusedUrl as exc:
        return http.Answer(None, f"refused: {exc}", 0)
    try:
        live = [crypto.decrypt(settings, s.ciphertext) for s in endpoint.live_secrets(now)]
    except crypto.CacheUnreadable:
        return http.Answer(None, "the endpoint's secret cannot be decrypted with CALSYNC_TOKEN_KEYS", 0)
    timestamp = int(now.timestamp())
    headers = signing.headers(live, event["_id"], timestamp, event["body"])
    return http.post(parts, address, headers, event["body"].encode("utf-8"), settings.outbound_timeout, context)


def _hold(db: Database, redis: Redis, delivery_id: str, endpoint: store.Endpoint, now: datetime) -> str:
    """The endpoint is failing and another delivery is probing it (or its hold is not over): wait for the hold,
    without counting an attempt, instead of spending a worker on a receiver that is down."""
    current = store.get_endpoint(db, endpoint.id)
    until = max(as_utc(current.hold_until) if current and current.hold_until else now, now)
    until += timedelta(seconds=random.uniform(1, 5))  # noqa: S311 - spread the held ones
    store.release(db, delivery_id, until)
    outbox.schedule(redis, delivery_id, until)
    return "held"


def _record(db: Database, endpoint: store.Endpoint, delivery: dict, answer: http.Answer, now: datetime,
            hold: datetime | None) -> None:
    store.record_attempt(db, endpoint.id, {
        "at": now, "delivery_id": delivery["_id"], "event_id": delivery["event_id"], "type": delivery["type"],
        "attempt": delivery["attempts"] + 1, "status": answer.status, "duration_ms": answer.duration_ms,
        "error": answer.error, "ok": answer.ok}, answer.ok, now, hold)
    if not answer.ok:
        log.info("outbound delivery %s to endpoint %s failed: %s", delivery["_id"], endpoint.id, answer.error)


def pause_if_failing(db: Database, endpoint_id: str, now: datetime) -> bool:
    if store.pause_if_failing_since(db, endpoint_id, now - PAUSE_AFTER, "failing for 3 days", now):
        log.warning("outbound endpoint %s paused: every delivery failed for 3 days", endpoint_id)
        return True
    return False


def sweep(db: Database, redis: Redis, now: datetime | None = None) -> dict:
    """Every minute: pause endpoints failing for 3 days, and queue deliveries whose time has come but whose
    job was lost (Redis down at emit time, a worker killed mid-attempt)."""
    now = now or utcnow()
    paused = sum(pause_if_failing(db, endpoint_id, now)
                 for endpoint_id in store.failing_endpoint_ids(db, now - PAUSE_AFTER))
    held = {e.id for e in store.endpoints(db) if e.status != store.ACTIVE}
    late = store.due_ids(db, now - SWEEP_GRACE, SWEEP_BATCH, exclude_endpoints=held)
    queued = sum(outbox.schedule(redis, delivery_id) for delivery_id in late)
    return {"paused": paused, "queued": queued}
