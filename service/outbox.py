"""The outbox: record an event once, fan it out to the endpoints that want it, and queue its deliveries.

Low in the layers (below identity), so that sync rounds, rich-notification writes, token refreshes,
connections and digests can all emit. Emitting never sends anything: it writes the event and one pending
delivery per active endpoint to MongoDB, then asks RQ (queue ``outbound``) to attempt each. If Redis is
unreachable, the outbox sweep finds the pending deliveries within a minute; nothing is lost.

Order: every event carries ``sequence``, a per-user number strictly increasing in the order events were
emitted. Deliveries are independent (one slow retry does not hold back the next event), so a receiver that
cares about order keeps the highest ``sequence`` it has applied per user.

Payloads are minimal: ids, times, counts and emails of matched attendees; never tokens, bodies or subjects.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pymongo.database import Database
from redis import Redis
from redis.exceptions import RedisError

from service import queues
from service.store import as_utc, utcnow
from service.store import outbound as store
from service.store.events import MeetingChanges

log = logging.getLogger(__name__)

MEETINGS_CHANGED = "meetings.changed"
MEETING_PREP_DUE = "meeting.prep_due"
CONNECTION_STATUS_CHANGED = "connection.status_changed"
DIGEST_SENT = "digest.sent"
EVENT_TYPES = (MEETINGS_CHANGED, MEETING_PREP_DUE, CONNECTION_STATUS_CHANGED, DIGEST_SENT)

RETRY_FOR = timedelta(hours=24)     # a delivery is retried this long after it was created (or replayed)
MAX_IDS = 1_000                     # per list in meetings.changed; beyond it ``truncated`` says "read the API"
MAX_EMAILS = 200


def emit(db: Database, redis: Redis, event_type: str, user_id: str, data: dict,
         now: datetime | None = None) -> str | None:
    """Record one event for ``user_id`` and queue its delivery to every active endpoint subscribed to it.

    Returns the event id (the ``webhook-id`` receivers see), or None when no endpoint wants this type (then
    nothing is stored). ``data`` must be JSON-able (use ``iso`` for times).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    wanting = store.endpoints_wanting(db, event_type)
    if not wanting:
        return None
    now = now or utcnow()
    event_id = f"msg_{uuid.uuid4().hex}"
    sequence = store.next_sequence(db, user_id)
    body = json.dumps({"id": event_id, "type": event_type, "timestamp": iso(now), "user_id": user_id,
                       "sequence": sequence, "data": data}, separators=(",", ":"), sort_keys=True)
    store.insert_event(db, event_id, event_type, user_id, sequence, body, now)
    event = {"_id": event_id, "type": event_type, "user_id": user_id, "sequence": sequence}
    for endpoint in wanting:
        if endpoint.status == store.ACTIVE:
            add_delivery(db, redis, endpoint.id, event, now)
    log.info("outbound event %s (%s) for user %s, sequence %d", event_id, event_type, user_id, sequence)
    return event_id


def add_delivery(db: Database, redis: Redis, endpoint_id: str, event: dict, now: datetime) -> str | None:
    """A pending delivery of ``event`` to one endpoint, queued now; None if it existed already."""
    delivery_id = f"dlv_{uuid.uuid4().hex}"
    if not store.insert_delivery(db, delivery_id, endpoint_id, event, now, RETRY_FOR):
        return None
    schedule(redis, delivery_id)
    return delivery_id


def schedule(redis: Redis, delivery_id: str, at: datetime | None = None) -> bool:
    """Ask a worker to attempt a delivery now (or at ``at``); False if Redis refused (the sweep covers it)."""
    queue = queues.get_queue(queues.OUTBOUND, redis)
    options = {"job_timeout": 60, "result_ttl": 600, "failure_ttl": 7 * 86400}
    try:
        if at is None:
            queue.enqueue(queues.DELIVER_WEBHOOK, delivery_id, **options)
        else:
            queue.enqueue_at(queues.not_before(at), queues.DELIVER_WEBHOOK, delivery_id, **options)
    except RedisError as exc:
        log.warning("could not queue outbound delivery %s (%s); the outbox sweep will", delivery_id,
                    type(exc).__name__)
        return False
    return True


def iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


# ------------------------------------------------------------------ the four events

def meetings_changed(db: Database, redis: Redis, user_id: str, changes: MeetingChanges,
                     now: datetime | None = None) -> str | None:
    """One per user per sync round (or rich-notification batch): the Graph ids of the meetings it created,
    updated and deleted, coalesced. Ids are those of ``/api/users/{id}/meetings``; read them there."""
    if not changes:
        return None
    lists = {name: sorted(getattr(changes, name)) for name in ("created", "updated", "deleted")}
    truncated = any(len(ids) > MAX_IDS for ids in lists.values())
    data = {name: ids[:MAX_IDS] for name, ids in lists.items()} | {"truncated": truncated}
    return emit(db, redis, MEETINGS_CHANGED, user_id, data, now)


def connection_status_changed(db: Database, redis: Redis, user_id: str, status: str, reason: str | None,
                              previous: str | None, now: datetime | None = None) -> str | None:
    """The user's connection moved to ``status`` (connected, needs_reconnect, disconnected) for ``reason``
    (a short code or phrase; ``data_deleted`` when the user deleted everything held about them)."""
    now = now or utcnow()
    return emit(db, redis, CONNECTION_STATUS_CHANGED, user_id,
                {"status": status, "previous_status": previous, "reason": reason, "since": iso(now)}, now)


def digest_sent(db: Database, redis: Redis, user_id: str, local_date: str, sent_at: datetime, meetings: int,
                now: datetime | None = None, channels: list[str] | None = None) -> str | None:
    """The user's daily digest for ``local_date`` (YYYY-MM-DD, their zone) went out, on ``channels``."""
    return emit(db, redis, DIGEST_SENT, user_id,
                {"local_date": local_date, "sent_at": iso(sent_at), "meetings": meetings,
                 "channels": channels or ["email"]}, now)


def prep_due(db: Database, redis: Redis, user_id: str, meeting_id: str, start: datetime,
             attendee_emails: Iterable[str], prep_at: datetime | None = None, meeting_key: str | None = None,
             now: datetime | None = None, channels: list[str] | None = None) -> str | None:
    """It is time to prepare for a meeting (meeting prep sends its mail, ``service.digest.prep``): its Graph
    id, its start, and the emails of the attendees matched in the people directory (never its subject);
    ``meeting_key`` is the dashboard's key for the meeting when the caller has it."""
    emails = sorted({e.strip().lower() for e in attendee_emails if isinstance(e, str) and e.strip()})[:MAX_EMAILS]
    now = now or utcnow()
    data = {"meeting_id": meeting_id, "start": iso(start), "prep_at": iso(prep_at or now),
            "matched_attendees": emails, "channels": channels or ["email"]}
    if meeting_key is not None:
        data["meeting_key"] = meeting_key
    return emit(db, redis, MEETING_PREP_DUE, user_id, data, now)
