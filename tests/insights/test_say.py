"""The people being described get a say: organization (default), restricted (the viewers they list and their
manager), private (nobody), and no tips for people from outside when they say so. One test per surface."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from service.digest import prep, send
from service.insights import coaching, dashboard, timeside, visibility
from service.insights.org import Organization
from service.store import people as people_store
from service.store import users as users_store
from service.store.records import User
from tests.support.factories import add_event, add_people, add_user, attendee

NOW = datetime(2026, 7, 1, 8, 50, tzinfo=UTC)
NINE = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
DAY = date(2026, 7, 1)
VIEWER = User("u", "me@example.com")
ANA = {"_id": "a", "emails": ["ana@example.com"], "primary_email": "ana@example.com", "manager": "boss@example.com"}


@pytest.mark.parametrize(("say", "viewer", "organization", "shown"), [
    ({}, "me@example.com", None, True),
    ({"visibility": "private"}, "me@example.com", None, False),
    ({"visibility": "private"}, "ana@example.com", None, True),                       # herself
    ({"visibility": "restricted", "viewers": ["me@example.com"]}, "me@example.com", None, True),
    ({"visibility": "restricted", "viewers": ["x@example.com"]}, "me@example.com", None, False),
    ({"visibility": "restricted"}, "boss@example.com", None, True),                  # her manager
    ({"external_tips": False}, "guest@fabrikam.com", Organization(frozenset({"fabrikam.com"})), False),
    ({"external_tips": False}, "me@example.com", Organization(frozenset({"example.com"})), True),
    ({}, "guest@fabrikam.com", Organization(frozenset({"fabrikam.com"})), True),
])
def test_the_one_decision(say, viewer, organization, shown):
    assert visibility.shows(User("v", viewer), {**ANA, **say}, organization) is shown


@pytest.fixture
def private_ana(db):
    add_people(db)
    me = add_user(db)
    ana = people_store.by_email(db, "ana@example.com")
    people_store.replace_fields(db, ana["_id"], {"visibility": "private"})
    add_event(db, me.id, "m1", NINE, NINE + timedelta(minutes=30), subject="Review",
              attendees=[attendee("me@example.com"), attendee("ana@example.com"), attendee("ben@example.com")])
    return users_store.get(db, me.id), ana


def test_surface_digest(db, settings, private_ana):
    me, ana = private_ana

    digest = send.compose(db, settings, me, DAY, NOW, record=False)

    assert [p.name for p in digest.people] == ["Ben"]
    assert all(t.person_id != ana["_id"] for p in digest.people + digest.also for t in p.tips)
    assert not next(a for a in digest.meetings[0].attendees if a.email == "ana@example.com").styles


def test_surface_channel_messages_render_the_same_digest(db, settings, private_ana):
    me, ana = private_ana

    digest = send.compose(db, settings, me, DAY, NOW, record=False)

    # Teams and Slack render Digest.people, .also and .sections: nothing there is about Ana.
    everything = [t for p in digest.people + digest.also for t in p.tips] + [t for s in digest.sections for t in s.tips]
    assert everything and all(t.person_id != ana["_id"] for t in everything)


def test_surface_prep_mail_and_its_outbound_payload(rt, db, private_ana, smtp_inbox):
    me, _ana = private_ana
    sent = []

    [due] = prep.due_preps(db, NOW)
    assert prep.deliver(rt.db, rt.settings, rt.mailer, due.user_id, due.meeting, due.start.isoformat(), NOW,
                        sent.append) == "sent"

    text = smtp_inbox.messages[0].get_body(("plain",)).get_content()
    assert "Ben" in text and "DISC D" in text
    assert text.count("DISC") == 1                                   # Ben's, not Ana's
    assert [a for a in sent[0]["attendees"]] == ["ben@example.com"]


def test_surface_dashboard(db, private_ana):
    me, _ana = private_ana
    event = db.events.find_one({"graph_id": "m1"})

    found = dashboard.build_dashboard(db, event, None, me)

    ana = next(r for r in found.people if r.match.email == "ana@example.com")
    assert (ana.labels, ana.tips) == ([], [])


def test_surface_coaching(db, private_ana):
    me, ana = private_ana

    found = coaching.suggest(db, me, DAY, now=NOW, record=False)

    assert found and all(s.person_id != ana["_id"] for s in found)


def test_surface_insights(db, private_ana):
    me, _ana = private_ana
    for n in range(4):
        start = NINE - timedelta(days=21 + 7 * n)
        add_event(db, me.id, f"o{n}", start, start + timedelta(minutes=30), attendees=[attendee("ana@example.com")])

    with time_machine.travel(NOW, tick=False):
        rhythm = timeside.rhythm_report(db, me, NOW)
        network = timeside.network_report(db, me, NOW)

    ana = next(r for r in rhythm if r.email == "ana@example.com")
    assert ana.overdue and ana.tip is None
    assert "D" not in network.styles["disc"] or network.styles["disc"]["D"] < 1   # Ana's D not counted
    assert network.styles["disc"].get("unknown", 0) > 0


def test_surface_api_meetings(client, ops_headers, private_ana):
    body = client.get("/api/users/me@example.com/meetings?start=2026-07-01T00:00:00Z&end=2026-07-02T00:00:00Z",
                      headers=ops_headers).get_json()

    people = {a["email"]: a["person"] for a in body["items"][0]["attendees"]}
    assert people["ana@example.com"]["styles"] == {} and people["ana@example.com"]["assessments"] == {}
    assert people["ben@example.com"]["styles"] == {"disc": "D"}
