"""Prep mails end to end: a user connected to the Graph emulator, meetings moved, cancelled and declined in
Outlook after their preps were planned, the changes arriving by webhook, the mails over real SMTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.digest import prep
from service.store import preps as preps_store
from service.store import users as users_store
from tests.support.connect import connect_user, emulated_user
from tests.support.factories import add_people


def _when(start: datetime) -> dict:
    return {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _body(subject: str, start: datetime) -> dict:
    """A meeting Ben organizes, with Ana (our user) and a guest from another company invited."""
    invited = [{"type": "required", "emailAddress": {"name": name, "address": address}}
               for name, address in (("Ana", "ana@contoso.com"), ("Guest", "guest@fabrikam.example"))]
    return {"subject": subject, "start": _when(start), "end": _when(start + timedelta(minutes=30)),
            "organizer": {"emailAddress": {"name": "Ben", "address": "ben@contoso.com"}}, "attendees": invited}


def test_preps_follow_meetings_moved_cancelled_and_declined_in_outlook(stack, smtp_inbox):
    control, db, redis = stack.emulator.control, stack.runtime.db, stack.runtime.redis
    ana = emulated_user(stack, mail="ana@contoso.com")
    user_id = connect_user(stack, ana["id"], "UTC")
    stack.run_jobs()
    add_people(db, [{"email": "ben@contoso.com", "name": "Ben", "assessments": {"disc": {"primary": "D"}}},
                    {"email": "guest@fabrikam.example", "name": "Guest", "assessments": {"disc": {"primary": "I"}}}])
    users_store.set_prep_preferences(db, user_id, minutes=60)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now.replace(second=0) + timedelta(minutes=40)
    created = {name: control.create_event(ana["id"], _body(name, start))["id"]
               for name in ("Kept", "Moved", "Cancelled", "Declined")}
    control.wait_idle(timeout=20)
    stack.run_jobs()

    assert prep.tick(db, redis, now) == 4                    # all four are due: 40 minutes ahead, lead 60
    later = start + timedelta(hours=3)
    control.update_event(ana["id"], created["Moved"],
                         {"start": _when(later), "end": _when(later + timedelta(minutes=30))})
    control.update_event(ana["id"], created["Cancelled"], {"isCancelled": True})
    control.update_event(ana["id"], created["Declined"], {"responseStatus": {"response": "declined"}})
    control.wait_idle(timeout=20)
    stack.run_jobs()                                         # the syncs run first (queue order), then the preps

    assert [m["Subject"] for m in smtp_inbox.messages] == [f"Prep: Kept at {start:%H:%M}"]
    text = next(p.get_content() for p in smtp_inbox.messages[0].walk() if p.get_content_type() == "text/plain")
    inside, outside = text.split("FROM OUTSIDE YOUR ORGANIZATION")
    assert "Ben <ben@contoso.com>: DISC D (Dominance)" in inside and "fabrikam.example" in outside
    outcomes = {preps_store.get(db, user_id, e["ical_uid"], start)["reason"] for e in db.events.find(
        {"user_id": user_id, "subject": {"$in": ["Moved", "Cancelled", "Declined"]}})
        if preps_store.get(db, user_id, e["ical_uid"], start)}
    assert outcomes == {"moved", "cancelled", "declined"}

    assert prep.tick(db, redis, now) == 0                    # nothing new is due now, and nothing twice
    assert prep.tick(db, redis, later - timedelta(minutes=60)) == 1
    stack.run_jobs()

    assert [m["Subject"] for m in smtp_inbox.messages] == [f"Prep: Kept at {start:%H:%M}",
                                                          f"Prep: Moved at {later:%H:%M}"]
