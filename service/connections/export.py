"""Everything calsync holds about one user, as a single JSON document written a piece at a time.

The export is streamed: the profile, connection, settings, calendars, exclusions, digest records and the
weekly summaries made of the events first (each small), then the stored events a batch at a time from one
cursor, so a user with 50,000 events costs one batch of memory, not the whole calendar. Tokens are never part
of it, nor are delta links (they are Graph's cursors, not the user's data).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import date, datetime

from bson import ObjectId
from pymongo.database import Database

from service.store import activity, calendars, coaching, digests, events, exclusions, outbound, preps, users, utcnow
from service.store import weeks as week_summaries

EXPORT_BATCH = 500
FORMAT = "calsync.export/1"


def export(db: Database, user_id: str, batch: int = EXPORT_BATCH) -> Iterator[str] | None:
    """The export as chunks of one JSON object, or None for an unknown user."""
    user = users.get(db, user_id)
    if user is None:
        return None
    return _chunks(db, user_id, batch)


def _chunks(db: Database, user_id: str, batch: int) -> Iterator[str]:
    user = users.get(db, user_id)
    if user is None:
        return
    head = {
        "format": FORMAT,
        "exported_at": utcnow(),
        "profile": {"id": user.id, "email": user.email, "name": user.name, "tenant_id": user.tenant_id,
                    "time_zone": user.time_zone, "time_zone_source": user.time_zone_source,
                    "graph_time_zone": user.graph_time_zone, "created_at": user.created_at},
        "connection": {"status": user.connection.status, "reason": user.connection.reason,
                       "since": user.connection.since},
        "settings": {"digest": {"enabled": user.digest.enabled, "time": user.digest.time,
                                "send_empty": user.digest.send_empty, "days": list(user.digest.days)},
                     "prep": {"minutes": user.prep.minutes, "meetings": str(user.prep.meetings),
                              "min_size": user.prep.min_size}},
        "sync": asdict(user.sync),
        "calendars": [{"id": c.calendar_id, "name": c.name, "owner_email": c.owner_email,
                       "is_default": c.is_default, "is_own": c.is_own, "enabled": c.enabled,
                       "last_sync_at": c.last_sync_at} for c in calendars.for_user(db, user_id)],
        "exclusions": exclusions.listed(db, user_id),
        "digests_sent": digests.for_user(db, user_id),
        "preps_sent": preps.for_user(db, user_id),
        "webhook_events": outbound.events_for_user(db, user_id),   # sent about them, kept 7 days
        "activity": activity.for_user(db, user_id),                 # the latest notifications, syncs, errors
        "tip_feedback": coaching.feedback_for_user(db, user_id),    # "useful" / "not useful" on tips
        "week_summaries": _weeks(db, user_id),                      # the finished weeks made of the events
    }
    text = _dumps(head)
    yield text[:-1] + ', "events": ['
    pending: list[str] = []
    separator = ""
    for event in events.iterate_for_user(db, user_id, batch):
        pending.append(_dumps(event))
        if len(pending) == batch:
            yield separator + ",".join(pending)
            pending, separator = [], ","
    if pending:
        yield separator + ",".join(pending)
    yield "]}\n"


def _weeks(db: Database, user_id: str) -> dict:
    return {key: json.loads(held["report"]) for key, held in week_summaries.for_user(db, user_id).items()
            if isinstance(held, dict) and isinstance(held.get("report"), str)}


def _dumps(value: object) -> str:
    return json.dumps(value, default=_plain, ensure_ascii=False, separators=(",", ":"))


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, ObjectId):
        return str(value)
    raise TypeError(f"not exportable: {type(value).__name__}")
