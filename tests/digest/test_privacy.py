"""Private meetings, meetings on two calendars, and what a user keeps out of insights, as every reader sees
them: the digest (over real SMTP), the dashboard, top collaborators and the API."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest

from service.digest import links, send
from service.insights import meetings
from service.insights.collaborators import top_collaborators
from service.store import events as events_store
from service.store import exclusions
from tests.support.factories import add_event, add_people, add_user, attendee
from tests.support.privacy import SECRET, graph_item

DAY = datetime(2026, 7, 1, tzinfo=UTC)


def _parts(message):
    return {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}


@pytest.mark.parametrize("sensitivity", ["private", "confidential"])
def test_a_private_meeting_is_stored_without_its_subject_and_shown_as_private_everywhere(
        rt, db, client, ops_headers, smtp_inbox, caplog, sensitivity):
    caplog.set_level(logging.DEBUG)
    user = add_user(db)
    add_people(db)
    events_store.apply_changes(db, user.id, [graph_item("p1", DAY.replace(hour=9), SECRET, sensitivity),
                                             graph_item("n1", DAY.replace(hour=11), "Weekly sync")], DAY)

    stored = events_store.get(db, user.id, "p1")
    assert stored["subject"] is None and stored["sensitivity"] == sensitivity
    assert events_store.get(db, user.id, "n1")["subject"] == "Weekly sync"
    # A later partial change (no sensitivity in it) does not bring the subject back.
    events_store.apply_changes(db, user.id, [{"id": "p1", "subject": SECRET, "changeKey": "ck-2",
                                              "lastModifiedDateTime": "2026-06-21T10:00:00Z"}], DAY)
    assert events_store.get(db, user.id, "p1")["subject"] is None

    assert send.deliver(rt.db, rt.settings, rt.mailer, user.id, "2026-07-01") == "sent"
    parts = _parts(smtp_inbox.messages[0])
    assert "09:00-09:30  Private meeting" in parts["text/plain"] and "Weekly sync" in parts["text/plain"]
    assert "Private meeting" in parts["text/html"]
    dashboard = client.get(links.dashboard_url(rt.settings, str(stored["_id"]), user.id, "p1")
                           .split(rt.settings.public_url)[1])
    assert dashboard.status_code == 200 and "<h1>Private meeting</h1>" in dashboard.get_data(as_text=True)
    listed = client.get(f"/api/users/{user.id}/meetings?start=2026-07-01T00:00:00Z&end=2026-07-02T00:00:00Z",
                        headers=ops_headers).get_json()["items"]
    assert [(m["subject"], m["is_private"]) for m in listed] == [("Private meeting", True), ("Weekly sync", False)]
    seen = [dashboard.get_data(as_text=True), parts["text/plain"], parts["text/html"], str(listed), caplog.text,
            str(list(db.events.find({})))]
    assert not [text for text in seen if SECRET in text]


def _two_calendar_copies(db, user_id: str, start: datetime, others=("ana@example.com",)):
    """The same meeting on the user's calendar and on a second one (same iCalUId and start)."""
    for graph_id, calendar in (("copy-b", "cal-shared"), ("copy-a", "cal-own")):
        add_event(db, user_id, graph_id, start, start + timedelta(hours=1), subject="Roadmap",
                  attendees=[attendee("me@example.com")] + [attendee(o) for o in others],
                  calendar_id=calendar, ical_uid="uid-roadmap")


def test_a_meeting_on_two_calendars_counts_once_in_digest_collaborators_and_api(
        rt, db, client, ops_headers, smtp_inbox):
    user = add_user(db)
    add_people(db)
    _two_calendar_copies(db, user.id, DAY.replace(hour=9))
    add_event(db, user.id, "other", DAY.replace(hour=13), DAY.replace(hour=14), subject="Other",
              attendees=[attendee("me@example.com"), attendee("ben@example.com")], calendar_id="cal-own")

    assert [e["graph_id"] for e in meetings.in_window(db, user.id, DAY, DAY + timedelta(days=1))] == \
        ["copy-a", "other"]   # the smallest Graph id stands for the meeting
    send.deliver(rt.db, rt.settings, rt.mailer, user.id, "2026-07-01")
    assert len(re.findall(r"\d\d:\d\d-\d\d:\d\d  Roadmap", _parts(smtp_inbox.messages[0])["text/plain"])) == 1
    ranked = top_collaborators(db, user, days=30, now=DAY + timedelta(days=1))
    assert {c.email: c.meetings for c in ranked} == {"ana@example.com": 1, "ben@example.com": 1}
    # Page by one: the copy that does not stand for the meeting never appears, on any page.
    seen, cursor = [], None
    while True:
        query = "start=2026-07-01T00:00:00Z&end=2026-07-02T00:00:00Z&limit=1" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(f"/api/users/{user.id}/meetings?{query}", headers=ops_headers).get_json()
        seen += [m["id"] for m in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == ["copy-a", "other"]


def test_excluding_a_meeting_from_the_dashboard_takes_it_out_of_insights_and_undo_brings_it_back(
        rt, db, client, ops_headers, smtp_inbox):
    user = add_user(db)
    add_people(db)
    _two_calendar_copies(db, user.id, DAY.replace(hour=9))
    copy = events_store.get(db, user.id, "copy-b")      # excluded through the copy that does not stand for it
    path = links.exclude_url(rt.settings, str(copy["_id"]), user.id, "copy-b").split(rt.settings.public_url)[1]
    token = path.split("t=")[1]

    page = client.get(path)                              # a GET (a mail scanner following links) only asks
    assert page.status_code == 200 and 'id="exclude-meeting"' in page.get_data(as_text=True)
    assert not exclusions.for_user(db, user.id)
    done = client.post(f"/meetings/{copy['_id']}/exclude", data={"t": token, "kind": "meeting", "action": "exclude"})
    assert done.status_code == 303

    assert meetings.in_window(db, user.id, DAY, DAY + timedelta(days=1)) == []
    assert top_collaborators(db, user, days=30, now=DAY + timedelta(days=1)) == []
    assert client.get(f"/api/users/{user.id}/meetings?start=2026-07-01T00:00:00Z&end=2026-07-02T00:00:00Z",
                      headers=ops_headers).get_json()["items"] == []
    assert send.deliver(rt.db, rt.settings, rt.mailer, user.id, "2026-07-01") == "skipped:no-meetings"
    dashboard = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'id="excluded"' in dashboard and 'class="attendee"' not in dashboard and 'id="include-meeting"' in dashboard

    client.post(f"/meetings/{copy['_id']}/exclude", data={"t": token, "kind": "meeting", "action": "include"})
    assert [e["graph_id"] for e in meetings.in_window(db, user.id, DAY, DAY + timedelta(days=1))] == ["copy-a"]


def test_excluding_a_series_covers_every_occurrence(rt, db, client):
    user = add_user(db)
    for n in range(3):
        start = DAY + timedelta(days=n, hours=9)
        add_event(db, user.id, f"occ-{n}", start, start + timedelta(minutes=30), subject="Standup",
                  type="occurrence", series_master_id="master-1")
    add_event(db, user.id, "single", DAY.replace(hour=15), DAY.replace(hour=16), subject="One-off")
    first = events_store.get(db, user.id, "occ-0")
    token = links.dashboard_token(rt.settings, user.id, "occ-0")

    client.post(f"/meetings/{first['_id']}/exclude", data={"t": token, "kind": "series", "action": "exclude"})

    assert [e["graph_id"] for e in meetings.in_window(db, user.id, DAY, DAY + timedelta(days=5))] == ["single"]


def test_only_the_owner_with_a_valid_token_can_exclude(rt, db, client):
    user = add_user(db)
    add_user(db, user_id="user-ana", email="ana@example.com", name="Ana")
    event = add_event(db, user.id, "m1", DAY.replace(hour=9), DAY.replace(hour=10),
                      attendees=[attendee("ana@example.com")])
    forged = links.dashboard_token(rt.settings, "user-ana", "m1")   # a token for someone else's event

    assert client.post(f"/meetings/{event['_id']}/exclude",
                       data={"t": forged, "kind": "meeting", "action": "exclude"}).status_code == 403
    assert client.post(f"/meetings/{event['_id']}/exclude",
                       data={"t": "garbage", "kind": "meeting", "action": "exclude"}).status_code == 403
    with client.session_transaction() as session:
        session["user_id"] = "user-ana"       # an attendee, signed in: may see the dashboard, not exclude
    assert client.get(f"/meetings/{event['_id']}").status_code == 200
    assert client.post(f"/meetings/{event['_id']}/exclude",
                       data={"kind": "meeting", "action": "exclude"}).status_code == 403
    good = links.dashboard_token(rt.settings, user.id, "m1")
    assert client.post(f"/meetings/{event['_id']}/exclude",
                       data={"t": good, "kind": "bogus", "action": "exclude"}).status_code == 400
    assert not exclusions.for_user(db, user.id)
    exclusions.add(db, user.id, exclusions.MEETING, "uid-m1")
    assert client.get(f"/meetings/{event['_id']}").status_code == 403   # excluded: no dashboard for others
