"""The read side of the events store: which events a window holds, and the queries that read them.

SecantusDB answers a hinted query by walking the whole index it names, and ``$in`` with a second clause by a
collection scan, so what each read sends decides whether it costs the user's events or everyone's: the reads
are checked on the commands they send as well as on what they return.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pymongo
import pytest

from service.store import events
from tests.support.factories import add_event
from tests.support.plans import Recorder, explain

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture
def calendars(db):
    """u1: a meeting in the window, one that ended before it, one after it, a conference that began 40 days before
    and runs through it, and one ending exactly when the window opens; u2 (an id between u1 and u3): a meeting
    in the same window; u3: another."""
    add_event(db, "u1", "inside", MONDAY + timedelta(hours=9), MONDAY + timedelta(hours=10))
    add_event(db, "u1", "before", MONDAY - timedelta(days=2), MONDAY - timedelta(days=2, hours=-1))
    add_event(db, "u1", "after", MONDAY + timedelta(days=8), MONDAY + timedelta(days=8, hours=1))
    add_event(db, "u1", "conference", MONDAY - timedelta(days=40), MONDAY + timedelta(days=2))
    add_event(db, "u1", "touching", MONDAY - timedelta(hours=1), MONDAY)
    add_event(db, "u1", "started-13-days-before", MONDAY - timedelta(days=13), MONDAY + timedelta(hours=1))
    add_event(db, "u2", "other-user", MONDAY + timedelta(hours=9), MONDAY + timedelta(hours=10))
    add_event(db, "u3", "third-user", MONDAY + timedelta(hours=11), MONDAY + timedelta(hours=12))


def test_in_window_holds_every_event_overlapping_it_however_long_ago_it_began(db, calendars):
    found = events.in_window(db, "u1", MONDAY, MONDAY + timedelta(days=7))

    assert [e["graph_id"] for e in found] == ["conference", "started-13-days-before", "inside"]


def test_in_window_for_users_reads_only_the_people_asked_for_and_their_window(db, calendars):
    found = events.in_window_for_users(db, ["u3", "u1"], MONDAY, MONDAY + timedelta(days=7))

    assert sorted(found) == ["u1", "u3"]            # u2 sorts between them and is not read
    assert [e["graph_id"] for e in found["u1"]] == ["started-13-days-before", "inside"]
    assert [e["graph_id"] for e in found["u3"]] == ["third-user"]
    assert "attendees" in found["u1"][0] and "change_key" not in found["u1"][0]   # the week's fields only


def test_in_window_for_users_leaves_out_meetings_longer_than_it_is_told(db, calendars):
    found = events.in_window_for_users(db, ["u1"], MONDAY, MONDAY + timedelta(days=7), longest=timedelta(days=60))

    assert [e["graph_id"] for e in found["u1"]] == ["conference", "started-13-days-before", "inside"]


@pytest.mark.wire
def test_the_window_reads_are_unhinted_index_ranges_of_one_user(calendars, mongodb_uri):
    """Each read is an equality on user_id and one range on start (no hint, no ``$in``): the shape every planner,
    SecantusDB's included, answers with that user's slice of the ``(user_id, start)`` index."""
    recorder = Recorder()
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True, event_listeners=[recorder])
    db = client.get_default_database()
    events.in_window(db, "u1", MONDAY, MONDAY + timedelta(days=7))
    events.in_window_for_users(db, ["u1", "u2", "u3"], MONDAY, MONDAY + timedelta(days=7))
    sent = [c for c in recorder.commands if c.get("find") == "events"]
    plans = [explain(db, c) for c in sent]
    client.close()

    assert len(sent) == 4
    assert [c["filter"]["user_id"] for c in sent] == ["u1", "u1", "u2", "u3"]
    assert all(set(c["filter"]) == {"user_id", "start"} and "hint" not in c for c in sent)
    bounded = sent[1:]
    assert all(set(c["filter"]["start"]) == {"$gte", "$lt"} for c in bounded)
    assert all(("IXSCAN", events.BY_USER_AND_START) in plan for plan in plans)


def test_pages_in_window_go_through_every_overlapping_event_once_in_start_and_id_order(db, calendars):
    """Pages of two, ties on start broken by Graph id (three meetings at 09:00), long meetings begun long before
    included, meetings ended before the window and other users' left out."""
    for graph_id in ("tie-c", "tie-a", "tie-b"):
        add_event(db, "u1", graph_id, MONDAY + timedelta(hours=9), MONDAY + timedelta(hours=9, minutes=30))
    window = (MONDAY, MONDAY + timedelta(days=7))
    pages, after = [], None
    while True:
        page = events.page_in_window(db, "u1", *window, after, 2)
        if not page:
            break
        pages.append([e["graph_id"] for e in page])
        after = (page[-1]["start"], page[-1]["graph_id"])

    assert pages == [["conference", "started-13-days-before"], ["inside", "tie-a"], ["tie-b", "tie-c"]]
    assert [e["graph_id"] for e in events.page_in_window(db, "u1", *window, None, 10)] == \
        [e for page in pages for e in page]


@pytest.mark.wire
def test_pages_in_window_are_unhinted_index_ranges_of_one_user(calendars, mongodb_uri):
    recorder = Recorder()
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True, event_listeners=[recorder])
    db = client.get_default_database()
    first = events.page_in_window(db, "u1", MONDAY, MONDAY + timedelta(days=7), None, 1)
    events.page_in_window(db, "u1", MONDAY, MONDAY + timedelta(days=7), (first[0]["start"], first[0]["graph_id"]), 1)
    sent = [c for c in recorder.commands if c.get("find") == "events"]
    plans = [explain(db, c) for c in sent]
    client.close()

    assert len(sent) == 2 and all(set(c["filter"]) == {"user_id", "start"} and "hint" not in c for c in sent)
    assert set(sent[1]["filter"]["start"]) == {"$gte", "$lt"}
    assert all(("IXSCAN", events.BY_USER_AND_START) in plan for plan in plans)
