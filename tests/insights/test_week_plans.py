"""The time side's reads are index scans on a real server (explain on the wire server), and one changed meeting
changes only the weeks of the people whose calendars hold it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pymongo
import pytest

from service.insights import timeside
from service.store import events as events_store
from service.store import users as users_store
from service.store import weeks as week_summaries
from tests.support.factories import add_event, add_people, add_user, attendee
from tests.support.plans import Recorder, explain

MONDAY = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture
def organisation(db):
    add_people(db)
    for n in range(30):
        add_user(db, user_id=f"u{n:02d}", email=f"u{n:02d}@example.com", time_zone="Europe/Paris")
        for k in range(5):
            start = MONDAY + timedelta(days=k, hours=n % 3)
            add_event(db, f"u{n:02d}", f"e{n}-{k}", start, start + timedelta(minutes=45),
                      attendees=[attendee(f"u{(n + 1) % 30:02d}@example.com")])
    return [users_store.get(db, f"u{n:02d}") for n in range(30)]


@pytest.mark.wire
def test_the_weeks_of_an_organisation_are_read_through_indexes(organisation, mongodb_uri):
    recorder = Recorder()
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True, event_listeners=[recorder])
    db = client.get_default_database()

    reports = timeside.weeks_for(db, organisation, 2026, 10)
    single = list(recorder.commands)
    recorder.commands.clear()
    timeside.week_report(db, organisation[0], 2026, 10)
    plans = [(c[next(iter(c))], explain(db, c)) for c in single + recorder.commands]
    client.close()

    assert len(reports) == 30 and reports["u00"].meetings == 5
    for collection, plan in plans:
        print(f"{collection:12} " + " <- ".join(f"{s}({i})" if i else s for s, i in plan))
    assert [c for c, plan in plans if any(s == "COLLSCAN" for s, _ in plan)] == []
    events_plan = next(plan for c, plan in plans if c == "events")
    assert (("IXSCAN", events_store.BY_USER_AND_START) in events_plan)
    summaries_plan = next(plan for c, plan in plans if c == week_summaries.COLLECTION)
    assert ("IXSCAN", week_summaries.BY_USER) in summaries_plan


@pytest.mark.wire
def test_fresh_weeks_are_served_from_their_summaries_through_an_index(organisation, mongodb_uri):
    """Once stored, an organisation's weeks are one index range of summaries a batch: no event is read."""
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
    first = timeside.weeks_for(client.get_default_database(), organisation, 2026, 10)
    client.close()
    recorder = Recorder()
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True, event_listeners=[recorder])
    db = client.get_default_database()

    again = timeside.weeks_for(db, organisation, 2026, 10)
    plans = [(c[next(iter(c))], explain(db, c)) for c in recorder.commands]
    client.close()

    assert again == first
    assert [c for c, _ in plans].count(week_summaries.COLLECTION) == 1 and "events" not in [c for c, _ in plans]
    assert [c for c, plan in plans if any(s == "COLLSCAN" for s, _ in plan)] == []
    assert ("IXSCAN", week_summaries.BY_USER) in dict(plans)[week_summaries.COLLECTION]


def test_one_changed_meeting_changes_only_the_weeks_of_its_people(db, organisation):
    before = timeside.weeks_for(db, organisation, 2026, 10)
    moved = {"id": "e3-0", "lastModifiedDateTime": "2026-03-03T00:00:00Z", "changeKey": "ck2",
             "end": {"dateTime": (MONDAY + timedelta(minutes=150)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}}
    assert events_store.apply_changes(db, "u03", [moved], MONDAY).upserted == 1   # as a sync round writes it

    after = timeside.weeks_for(db, organisation, 2026, 10)

    changed = sorted(u for u in before if before[u].seconds != after[u].seconds)
    assert changed == ["u03"]


def test_batches_read_ahead_give_each_person_the_week_read_alone(db, organisation, monkeypatch):
    """Several batches (the next one read on a thread while this one is measured): every person's week is the
    one their own read gives, and nobody is left out or counted twice."""
    monkeypatch.setattr(timeside, "BATCH", 7)     # 30 people: five batches, the last one short
    db.events.update_one({"user_id": "u12", "graph_id": "e12-2"}, {"$set": {"is_cancelled": True}})

    reports = timeside.weeks_for(db, list(reversed(organisation)), 2026, 10)

    assert sorted(reports) == [f"u{n:02d}" for n in range(30)]
    for user in organisation:
        assert reports[user.id].seconds == timeside.week_report(db, user, 2026, 10).seconds
    assert reports["u12"].meetings == 4 and reports["u11"].meetings == 5
