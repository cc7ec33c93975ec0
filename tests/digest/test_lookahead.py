"""The Monday look-ahead section of the digest: next days' load, heaviest day, first meetings with new people,
overdue 1:1s, tips; only on Mondays; through Digest.sections, so every channel renders it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine

from service.digest import lookahead, send
from service.digest.render import render_html, render_text
from service.store import people as people_store
from tests.support.factories import add_event, add_people, add_user, attendee

TOKYO = ZoneInfo("Asia/Tokyo")
MONDAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 1, 21, 30, tzinfo=UTC)          # Monday 06:30 in Tokyo


def _calendar(db):
    add_people(db)
    user = add_user(db, time_zone="Asia/Tokyo")
    for n in range(4):                                      # weekly 1:1 with Ana, last one 3 weeks ago
        start = datetime(2026, 2, 9, 10, tzinfo=TOKYO) - timedelta(days=7 * n)
        add_event(db, user.id, f"ana{n}", start, start + timedelta(minutes=30), attendees=[attendee("ana@example.com")])
    for n, hour in enumerate((9, 10, 11, 14)):             # Wednesday is the heaviest day
        start = datetime(2026, 3, 4, hour, tzinfo=TOKYO)
        add_event(db, user.id, f"wed{n}", start, start + timedelta(minutes=60), attendees=[attendee("ana@example.com")])
    start = datetime(2026, 3, 3, 15, tzinfo=TOKYO)
    add_event(db, user.id, "first", start, start + timedelta(minutes=45), subject="Kickoff",
              attendees=[attendee("ben@example.com")])
    return user


def test_monday_digest_carries_the_week_ahead_with_tips_and_a_link(db, settings):
    user = _calendar(db)

    with time_machine.travel(NOW, tick=False):
        digest = send.compose(db, settings, user, MONDAY, record=False)

    found = next(s for s in digest.sections if s.key == lookahead.KEY)
    text = "\n".join(found.lines)
    assert found.title == "Your week ahead (week 10)"
    assert "5 meetings, 4 h 45 min in meetings" in text
    assert "Heaviest day: Wed 4 Mar (4 h of meetings)" in text
    assert "First meeting with Ben" in text and "Tue 3 Mar, 15:00, Kickoff" in text
    assert "Your 1:1 with Ana" in text and "overdue" in text
    assert found.tips and all(t.useful for t in found.tips)          # numbered, with feedback links
    assert found.link[0] == "See your week" and "/insights/week?t=" in found.link[1]
    html, plain = render_html(digest), render_text(digest)
    assert "Your week ahead" in html and "Heaviest day: Wed 4 Mar" in plain
    assert [s.key for s in digest.sections] == [lookahead.KEY]          # nothing met last week: no summary


def test_monday_digest_sums_up_last_week_when_there_was_one(db, settings):
    user = _calendar(db)
    start = datetime(2026, 2, 24, 20, tzinfo=TOKYO)                      # Tuesday of last week, after hours
    add_event(db, user.id, "late", start, start + timedelta(minutes=90), attendees=[attendee("cy@example.com")])

    with time_machine.travel(NOW, tick=False):
        digest = send.compose(db, settings, user, MONDAY, record=False)

    last = next(s for s in digest.sections if s.key == lookahead.SUMMARY_KEY)
    assert last.title == "Your last week (week 9)"
    assert last.lines[0].startswith("1 meeting, 1 h 30 min in meetings")
    assert "1 h 30 min of meetings after hours" in last.lines[1] and "week=2026-W09" in last.link[1]


def test_other_days_have_no_look_ahead(db, settings):
    user = _calendar(db)

    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        digest = send.compose(db, settings, user, MONDAY + timedelta(days=1), record=False)

    assert all(s.key != lookahead.KEY for s in digest.sections)


def test_a_private_person_gets_no_tip_in_the_look_ahead(db, settings):
    user = _calendar(db)
    ben = people_store.by_email(db, "ben@example.com")
    people_store.replace_fields(db, ben["_id"], {"visibility": "private"})

    with time_machine.travel(NOW, tick=False):
        found = next(s for s in send.compose(db, settings, user, MONDAY, record=False).sections)

    assert "First meeting with Ben" in "\n".join(found.lines)
    assert all(t.person_id != ben["_id"] for t in found.tips)


def test_the_first_meeting_tip_is_about_the_new_person_when_they_allow_it(db, settings):
    user = _calendar(db)
    ben = people_store.by_email(db, "ben@example.com")

    with time_machine.travel(NOW, tick=False):
        found = next(s for s in send.compose(db, settings, user, MONDAY, record=False).sections)

    assert any(t.person_id == ben["_id"] for t in found.tips)
