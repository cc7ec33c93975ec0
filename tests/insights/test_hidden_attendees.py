"""Hidden attendee lists (issue 21): a meeting whose organizer set hideAttendees shows each attendee only themselves,
so calsync says "attendee list hidden by the organizer", never counts it as a one-to-one or for collaborators, and
gives no tip about the people it cannot see."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from service.config import Settings
from service.digest import prep
from service.digest.build import build_digest
from service.digest.render import render_html, render_text
from service.insights import coaching, org
from service.insights.collaborators import top_collaborators
from service.insights.dashboard import build_dashboard
from service.insights.matching import HIDDEN_NOTE, Directory, attendee_emails, self_emails
from service.store import users
from tests.support.connect import connect_user, emulated_user
from tests.support.factories import add_event, add_people, add_user, attendee

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
BEN = {"name": "Ben", "email": "ben@example.com"}


def hidden_town_hall(db, user, graph_id="hidden", start=None, **extra):
    """Ben's meeting with the list hidden: the user's copy lists only the user, as Outlook gives it."""
    start = start or NOW - timedelta(days=2)
    return add_event(db, user.id, graph_id, start, start + timedelta(hours=1), subject="Town hall",
                     organizer=BEN, attendees=[attendee("me@example.com")], hide_attendees=True, **extra)


def test_a_hidden_list_counts_for_no_collaborator_not_even_the_organizer(db):
    user = add_user(db)
    add_people(db)
    hidden_town_hall(db, user)
    start = NOW - timedelta(days=3)
    add_event(db, user.id, "one-on-one", start, start + timedelta(hours=1), organizer=BEN,
              attendees=[attendee("me@example.com")])

    ranked = top_collaborators(db, user, days=30, now=NOW)

    assert [(c.email, c.meetings) for c in ranked] == [("ben@example.com", 1)]   # the visible 1:1 only


def test_the_organizers_own_copy_is_not_hidden_from_them(db):
    user = add_user(db)
    add_people(db)
    start = NOW - timedelta(days=2)
    add_event(db, user.id, "mine", start, start + timedelta(hours=1), hide_attendees=True,
              attendees=[attendee("ben@example.com"), attendee("ana@example.com")])

    assert {c.email for c in top_collaborators(db, user, days=30, now=NOW)} == {"ben@example.com", "ana@example.com"}


def test_the_digest_says_the_list_is_hidden_and_tips_only_about_the_organizer(db):
    user = add_user(db)
    add_people(db)
    day = date(2026, 3, 20)
    event = hidden_town_hall(db, user, start=datetime(2026, 3, 20, 15, tzinfo=UTC))
    directory = Directory.for_emails(db, attendee_emails([event]) | {user.email})

    digest = build_digest(user, day, [event], directory)

    (view,) = digest.meetings
    assert view.note == HIDDEN_NOTE
    assert [a.email for a in view.attendees] == ["ben@example.com"]
    assert "Attendee list hidden by the organizer." in render_html(digest)
    assert "  Attendee list hidden by the organizer.\n  With: " in render_text(digest)


def test_prep_takes_no_hidden_meeting_for_a_one_to_one_and_gives_no_size_or_group_notes(db):
    user = add_user(db)
    add_people(db)
    event = hidden_town_hall(db, user, start=NOW + timedelta(hours=1))
    directory = Directory.for_emails(db, attendee_emails([event]) | {user.email})
    organization = org.for_user(db, user)
    db.users.update_one({"_id": user.id}, {"$set": {"prep": {"minutes": 15, "meetings": "one_on_one"}}})
    one_on_one = users.get(db, user.id)
    db.users.update_one({"_id": user.id}, {"$set": {"prep": {"minutes": 15, "meetings": "all"}}})
    everything = users.get(db, user.id)

    assert prep.meeting_reason(one_on_one, event, directory, organization, NOW) == "not-chosen"
    assert prep.meeting_reason(everything, event, directory, organization, NOW) is None
    mail = prep.compose(db, Settings(), everything, event, directory, organization, "r1")
    assert [a.email for a in mail.attendees] == ["ben@example.com"]
    assert mail.notes == ["Attendee list hidden by the organizer."]


def test_the_dashboard_shows_only_the_organizer_and_no_style_mix(db):
    user = add_user(db)
    add_people(db)
    event = hidden_town_hall(db, user)

    dashboard = build_dashboard(db, event)

    assert dashboard.note == HIDDEN_NOTE and dashboard.mixes == []
    assert [row.match.email for row in dashboard.people] == ["ben@example.com"]


def test_coaching_skips_hidden_meetings(db):
    user = add_user(db)
    add_people(db)
    hidden_town_hall(db, user, start=datetime(2026, 3, 20, 15, tzinfo=UTC))

    suggestions = coaching.suggest(db, user, date(2026, 3, 20), now=NOW, record=False)

    assert suggestions == []
    assert self_emails(user, Directory.for_emails(db, {user.email})) >= {"me@example.com"}


def test_a_hidden_list_from_outlook_is_stored_as_such_and_said_by_the_api(stack, ops_headers):
    control = stack.emulator.control
    ada = emulated_user(stack, mail="ada@contoso.com")
    bob = emulated_user(stack, mail="bob@contoso.com")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    guests = [{"emailAddress": {"address": a}} for a in ("ada@contoso.com", "eve@contoso.com", "fay@contoso.com")]
    control.create_event(ada["id"], {
        "subject": "Town hall", "hideAttendees": True, "attendees": guests,
        "organizer": {"emailAddress": {"address": "bob@contoso.com", "name": "Bob"}},
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}})
    user_id = connect_user(stack, ada["id"])
    stack.run_jobs()

    (stored,) = stack.runtime.db.events.find({"user_id": user_id})
    meetings = stack.client.get(f"/api/users/{user_id}/meetings", headers=ops_headers).get_json()["items"]

    assert stored["hide_attendees"] is True and [a["email"] for a in stored["attendees"]] == ["ada@contoso.com"]
    assert [(m["attendees_hidden"], m["organizer"]["email"]) for m in meetings] == [(True, "bob@contoso.com")]
    assert bob["id"] != user_id
