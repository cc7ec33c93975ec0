"""Stored users, events and people in the shapes of docs/design.md, inserted straight into the db."""

from __future__ import annotations

from datetime import UTC, datetime

from service.digest import plan
from service.insights.people import import_rows
from service.store import users


def add_user(db, user_id="user-1", email="me@example.com", time_zone="UTC", graph_time_zone=None,
             digest=None, status="connected", name="Morgan Me", planned_at=None):
    """A stored user whose next digest is planned as of ``planned_at`` (default now), as connecting would."""
    now = datetime.now(UTC)
    doc = {"_id": user_id, "tenant_id": "tenant-1", "email": email, "display_name": name,
           "time_zone": time_zone, "graph_time_zone": graph_time_zone,
           "connection": {"status": status, "reason": None, "since": now},
           "digest": {"enabled": True, "time": None, "send_empty": False, "days": list(range(7)), **(digest or {})},
           "sync": {"last_sync_at": now, "last_notification_at": None, "error_count": 0},
           "created_at": now, "updated_at": now}
    db.users.insert_one(doc)
    plan.reschedule(db, user_id, "06:30", planned_at or now)
    return users.get(db, user_id)


def attendee(email, name=None, type_="required", response="accepted"):
    return {"name": name or email.split("@")[0].title(), "email": email.lower(), "type": type_, "response": response}


def add_event(db, user_id, graph_id, start, end, subject="Meeting", attendees=(), organizer=None,
              is_all_day=False, is_cancelled=False, start_tz="UTC", online=False, **extra):
    """A stored event; ``extra`` sets or overrides any stored field (calendar_id, ical_uid, sensitivity…)."""
    doc = {"user_id": user_id, "graph_id": graph_id, "subject": subject, "start": start.astimezone(UTC),
           "end": end.astimezone(UTC), "start_tz": start_tz, "end_tz": start_tz, "is_all_day": is_all_day,
           "organizer": organizer or {"name": "Morgan Me", "email": "me@example.com"},
           "attendees": list(attendees), "is_cancelled": is_cancelled, "show_as": "busy",
           "is_online_meeting": online, "type": "singleInstance", "series_master_id": None,
           "ical_uid": f"uid-{graph_id}", "last_modified": start, "change_key": "ck", "stored_at": start,
           **extra}
    db.events.insert_one(doc)
    return doc


PEOPLE = [
    {"email": "ana@example.com", "aliases": ["ana.alias@example.org"], "name": "Ana", "team": "Sales",
     "assessments": {"disc": {"primary": "D", "secondary": "I"}, "enneagram": {"type": "8", "wing": "7"}}},
    {"email": "ben@example.com", "name": "Ben", "team": "Eng", "assessments": {"disc": {"primary": "D"}}},
    {"email": "cy@example.com", "name": "Cy", "team": "Eng", "assessments": {"disc": {"scores": {"C": 90, "S": 40}}}},
    {"email": "me@example.com", "aliases": ["morgan@old.example.com"], "name": "Morgan Me",
     "assessments": {"disc": {"primary": "S"}}},
]


def add_people(db, people=PEOPLE):
    summary = import_rows(db, enumerate(people, start=1))
    assert not summary.rejected, summary.rejected
    return summary
