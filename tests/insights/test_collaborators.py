from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.insights.collaborators import top_collaborators
from tests.support.factories import add_event, add_people, add_user, attendee

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def test_collaborators_weighted_by_length_and_size_over_the_window(db):
    user = add_user(db)
    add_people(db)
    day = NOW - timedelta(days=3)
    # one hour 1:1 with Ben: Ben +1.0
    add_event(db, user.id, "a", day, day + timedelta(hours=1), attendees=[attendee("ben@example.com")])
    # two hours with Ana (as alias) and four others: each +0.4
    group = [attendee("ana.alias@example.org")] + [attendee(f"p{i}@example.com") for i in range(4)]
    add_event(db, user.id, "b", day, day + timedelta(hours=2), attendees=group)
    # 30 minutes with Ana by her primary address: +0.5 -> Ana 0.9
    add_event(db, user.id, "c", day, day + timedelta(minutes=30), attendees=[attendee("ana@example.com")])
    # ignored: cancelled, declined, all-day, out of window, rooms
    add_event(db, user.id, "d", day, day + timedelta(hours=5), attendees=[attendee("cy@example.com")],
              is_cancelled=True)
    add_event(db, user.id, "e", day, day + timedelta(hours=5),
              attendees=[attendee("cy@example.com"), attendee("me@example.com", response="declined")])
    add_event(db, user.id, "f", day, day + timedelta(days=1), attendees=[attendee("cy@example.com")],
              is_all_day=True)
    old = NOW - timedelta(days=40)
    add_event(db, user.id, "g", old, old + timedelta(hours=9), attendees=[attendee("cy@example.com")])
    add_event(db, user.id, "h", day, day + timedelta(hours=1),
              attendees=[attendee("room@example.com", type_="resource"), attendee("ben@example.com")])

    ranked = top_collaborators(db, user, days=30, now=NOW)

    assert [(c.email, round(c.score, 2), c.meetings) for c in ranked[:2]] == [
        ("ben@example.com", 2.0, 2), ("ana@example.com", 0.9, 2)]
    assert ranked[1].name == "Ana" and ranked[1].minutes == 150
    assert "cy@example.com" not in [c.email for c in ranked]
    assert len(ranked) == 6
