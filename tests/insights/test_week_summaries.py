"""Stored weekly summaries (``service.store.weeks``): a fresh one is served instead of reading events; every write
to a person's events (each kind of write site), and a change of any other input of their week, makes it measured
again; a week measured from events read before a write is never stored as fresh; deleting a user's data deletes
their summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.insights import timeside, week
from service.store import events as events_store
from service.store import exclusions, people, users
from service.store import weeks as week_summaries
from service.store import workhours as workhours_store
from tests.support.factories import add_event, add_user, attendee

YEAR, WEEK = 2026, 10
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)          # ISO 2026-W10
NOW = MONDAY + timedelta(days=20)                  # the writes' clock (tombstones, stored_at)


@pytest.fixture
def two(db):
    """u1 and u2 in Paris. u1: an orphan meeting (no calendar) Monday 08:00 UTC, the only event to end before
    Monday 09:00; meetings Tuesday to Thursday on calendar "cal"; one whose only attendee is an address of
    theirs the directory does not know yet. u2: meetings from Tuesday."""
    for user_id in ("u1", "u2"):
        add_user(db, user_id=user_id, email=f"{user_id}@example.com", time_zone="Europe/Paris")
    add_event(db, "u1", "u1-0", MONDAY + timedelta(hours=8), MONDAY + timedelta(hours=8, minutes=45),
              attendees=[attendee("ana@example.com")])
    for n in range(1, 4):
        start = MONDAY + timedelta(days=n, hours=9)
        add_event(db, "u1", f"u1-{n}", start, start + timedelta(hours=1), attendees=[attendee("ana@example.com")],
                  calendar_id="cal")
        add_event(db, "u2", f"u2-{n}", start, start + timedelta(hours=1), attendees=[attendee("ana@example.com")],
                  calendar_id="cal")
    solo = MONDAY + timedelta(days=4, hours=13)
    add_event(db, "u1", "u1-solo", solo, solo + timedelta(minutes=30), calendar_id="cal",
              organizer={"name": "u1", "email": "u1@example.com"}, attendees=[attendee("u1.old@example.com")])
    return db


def people_of(db) -> list:
    return [users.get(db, "u1"), users.get(db, "u2")]


def graph_item(graph_id: str, start: datetime, minutes: int = 60, modified: str = "2026-03-10T00:00:00Z") -> dict:
    """An event as Graph's delta lists it."""
    end = start + timedelta(minutes=minutes)
    return {"id": graph_id, "subject": "New", "iCalUId": f"uid-{graph_id}", "changeKey": "ck2",
            "lastModifiedDateTime": modified,
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "organizer": {"emailAddress": {"address": "ana@example.com"}},
            "attendees": [{"emailAddress": {"address": "ana@example.com"}, "type": "required",
                           "status": {"response": "accepted"}}]}


def held(db, user_id: str) -> dict | None:
    doc = db.week_summaries.find_one({"_id": user_id})
    return None if doc is None else {"version": doc.get("events_version"),
                                     "summary": (doc.get("weeks") or {}).get(week_summaries.week_key(YEAR, WEEK))}


def measured_from_events(db, user) -> week.WeekReport:
    """The week measured straight from the stored events (no summary to serve)."""
    db.week_summaries.delete_many({"_id": user.id})
    report = timeside.week_report(db, user, YEAR, WEEK)
    return report


def test_a_fresh_summary_is_served_without_reading_events(two):
    first = timeside.weeks_for(two, people_of(two), YEAR, WEEK)
    assert week.report_from_text(held(two, "u1")["summary"]["report"]) == first["u1"]
    two.events.delete_many({"user_id": "u1"})    # behind the store's back: nothing says the week changed

    again = timeside.weeks_for(two, people_of(two), YEAR, WEEK)

    assert again == first and again["u1"].meetings == 5     # served, equal to what was measured


WRITES = {
    "sync upsert (new)": lambda db: events_store.apply_changes(
        db, "u1", [graph_item("u1-new", MONDAY + timedelta(days=2, hours=15))], NOW, "cal"),
    "sync upsert (newer version)": lambda db: events_store.apply_changes(
        db, "u1", [graph_item("u1-2", MONDAY + timedelta(days=2, hours=9), minutes=150)], NOW, "cal"),
    "sync removal": lambda db: events_store.apply_changes(db, "u1", [{"id": "u1-1", "@removed": {}}], NOW),
    "removals after every calendar": lambda db: events_store.apply_removals(db, "u1", {"u1-1": ("cal", True)}, NOW),
    "missing after a full resync": lambda db: events_store.delete_missing(db, "u1", "cal", {"u1-1"}, NOW),
    "calendar removed": lambda db: events_store.delete_for_calendar(db, "u1", "cal"),
    "orphans adopted": lambda db: events_store.adopt_orphans(db, "u1", "cal"),
    "ids renamed": lambda db: events_store.rename_ids(db, "u1", {"u1-3": "u1-3-immutable"}),
    "retention": lambda db: events_store.delete_ended_before(db, MONDAY + timedelta(hours=9)),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_each_write_to_events_drops_that_persons_summaries_only(two, write):
    before = timeside.weeks_for(two, people_of(two), YEAR, WEEK)
    versions = {u: held(two, u)["version"] for u in ("u1", "u2")}

    write(two)

    assert held(two, "u1")["summary"] is None and held(two, "u1")["version"] > versions["u1"]
    assert held(two, "u2") == {"version": versions["u2"], "summary": {
        "fingerprint": held(two, "u2")["summary"]["fingerprint"], "report": week.report_text(before["u2"])}}
    after = timeside.weeks_for(two, people_of(two), YEAR, WEEK)
    assert after["u2"] == before["u2"]
    assert after["u1"] == measured_from_events(two, users.get(two, "u1"))


def test_retention_drops_only_the_weeks_its_deleted_events_were_in(two):
    later = MONDAY + timedelta(days=14, hours=9)                 # 2026-W12
    add_event(two, "u1", "u1-w12", later, later + timedelta(hours=1), attendees=[attendee("ana@example.com")])
    timeside.weeks_for(two, people_of(two), YEAR, WEEK)
    w12 = timeside.week_report(two, users.get(two, "u1"), YEAR, 12)
    version = held(two, "u1")["version"]

    events_store.delete_ended_before(two, MONDAY + timedelta(hours=9))     # u1-0 only

    doc = two.week_summaries.find_one({"_id": "u1"})
    assert sorted(doc["weeks"]) == ["2026-12"] and doc["events_version"] == version + 1
    assert week.report_from_text(doc["weeks"]["2026-12"]["report"]) == w12
    assert held(two, "u2")["summary"]                              # nothing of u2's was deleted


def test_deleting_a_users_events_deletes_their_summaries(two):
    timeside.weeks_for(two, people_of(two), YEAR, WEEK)

    events_store.delete_for_user(two, "u1")

    assert two.week_summaries.count_documents({"_id": "u1"}) == 0 and held(two, "u2")["summary"]


def test_deleting_all_of_a_users_data_deletes_their_summaries(rt):
    add_user(rt.db, user_id="u1", email="u1@example.com")
    add_event(rt.db, "u1", "e1", MONDAY + timedelta(hours=9), MONDAY + timedelta(hours=10),
              attendees=[attendee("ana@example.com")])
    timeside.week_report(rt.db, users.get(rt.db, "u1"), YEAR, WEEK)
    assert held(rt.db, "u1")["summary"]

    rt.connections.delete_all_data("u1")

    assert rt.db.week_summaries.count_documents({}) == 0


def test_a_week_measured_while_the_user_was_deleted_is_not_written_back(two):
    read = week_summaries.read(two, ["u1"], YEAR, WEEK)
    events_store.delete_for_user(two, "u1")

    stored = week_summaries.store(two, YEAR, WEEK, {"u1": (read["u1"].version, {"fingerprint": "f", "report": {}})})

    assert stored == 0 and two.week_summaries.count_documents({"_id": "u1"}) == 0


def test_a_week_measured_from_events_read_before_a_write_is_not_stored(two, monkeypatch):
    """A sync writes a meeting after this read of u1's events and before the week is stored: the week answered
    is the one read, but it is not kept, and the next read measures the new meeting."""
    before = timeside.weeks_for(two, people_of(two), YEAR, WEEK)["u1"]
    two.week_summaries.delete_many({})
    read_events = events_store.in_window_for_users

    def then_a_sync_writes(db, user_ids, start, end):
        found = read_events(db, user_ids, start, end)
        events_store.apply_changes(db, "u1", [graph_item("u1-late", MONDAY + timedelta(days=2, hours=15))], NOW)
        return found

    monkeypatch.setattr(events_store, "in_window_for_users", then_a_sync_writes)
    answered = timeside.week_report(two, users.get(two, "u1"), YEAR, WEEK)
    monkeypatch.setattr(events_store, "in_window_for_users", read_events)

    assert answered == before and held(two, "u1")["summary"] is None
    assert timeside.week_report(two, users.get(two, "u1"), YEAR, WEEK).meetings == before.meetings + 1


def test_no_week_is_stored_while_a_round_writes_and_the_round_end_makes_the_half_view_stale(two):
    """Inside a sync round the version is bumped after its first write (marked "writing": nothing is stored
    meanwhile) and at its end: a week measured between two of its writes is served to that caller, never stored."""
    before = timeside.weeks_for(two, people_of(two), YEAR, WEEK)["u1"]
    version = held(two, "u1")["version"]

    with events_store.one_version_bump(two):
        events_store.apply_changes(two, "u1", [graph_item("r1", MONDAY + timedelta(days=2, hours=15))], NOW)
        mid = timeside.week_report(two, users.get(two, "u1"), YEAR, WEEK)
        assert held(two, "u1") == {"version": version + 1, "summary": None}     # measured, not stored
        events_store.apply_changes(two, "u1", [graph_item("r2", MONDAY + timedelta(days=2, hours=17))], NOW)

    assert held(two, "u1") == {"version": version + 2, "summary": None}     # two writes for the round
    assert mid.meetings == before.meetings + 1
    assert timeside.week_report(two, users.get(two, "u1"), YEAR, WEEK).meetings == before.meetings + 2
    assert held(two, "u1")["summary"] is not None                            # the round is over: stored again


def test_a_round_whose_worker_died_mid_way_leaves_nothing_stored_until_the_next_round_ends(two, monkeypatch):
    """A worker SIGKILLed between two writes of a round never bumps at the end: the person's week is measured
    from their events on each read (what the events say now), not served from a week stored mid-round."""
    timeside.weeks_for(two, people_of(two), YEAR, WEEK)
    bump = week_summaries.bump
    with monkeypatch.context() as killed:                      # the round's end never comes
        killed.setattr(week_summaries, "bump", lambda db, ids, writing=False: writing and bump(db, ids, writing))
        with events_store.one_version_bump(two):
            events_store.apply_changes(two, "u1", [graph_item("k1", MONDAY + timedelta(days=2, hours=15))], NOW)
    first = timeside.week_report(two, users.get(two, "u1"), YEAR, WEEK)
    two.events.insert_one({**two.events.find_one({"graph_id": "k1"}, {"_id": 0}), "graph_id": "k2",
                           "start": MONDAY + timedelta(days=3, hours=15), "end": MONDAY + timedelta(days=3, hours=16)})
    second = timeside.week_report(two, users.get(two, "u1"), YEAR, WEEK)   # the dead round's second write landed

    assert held(two, "u1")["summary"] is None and second.meetings == first.meetings + 1
    with events_store.one_version_bump(two):                   # the next round ends
        events_store.apply_changes(two, "u1", [graph_item("k3", MONDAY + timedelta(days=4, hours=8))], NOW)
    timeside.week_report(two, users.get(two, "u1"), YEAR, WEEK)
    assert held(two, "u1")["summary"] is not None


def test_a_version_bumped_between_read_and_store_refuses_the_store(two):
    read = week_summaries.read(two, ["u1", "u2"], YEAR, WEEK)      # no documents yet: created at version 0
    week_summaries.bump(two, ["u1"])

    stored = week_summaries.store(two, YEAR, WEEK, {u: (read[u].version, {"fingerprint": "f", "report": {}})
                                                    for u in ("u1", "u2")})

    assert stored == 1 and held(two, "u1")["summary"] is None and held(two, "u2")["summary"]


def _change_zone(db):
    users.choose_time_zone(db, "u1", "Asia/Tokyo")


def _change_hours(db):
    assert workhours_store.save(db, "u1", {"start": "07:00", "end": "19:00", "days": [0, 1, 2, 3, 4],
                                           "source": "settings"})


def _exclude(db):
    assert exclusions.add(db, "u1", exclusions.MEETING, "uid-u1-2")


def _alias(db):
    people.create(db, {"emails": ["u1@example.com", "u1.old@example.com"], "primary_email": "u1@example.com",
                       "name": "U One"})


INPUTS = {"zone": _change_zone, "working hours": _change_hours, "exclusion": _exclude, "directory alias": _alias}


@pytest.mark.parametrize("change", INPUTS.values(), ids=INPUTS.keys())
def test_a_change_of_any_other_input_measures_the_week_again(two, change):
    before = timeside.weeks_for(two, people_of(two), YEAR, WEEK)

    change(two)
    after = timeside.weeks_for(two, people_of(two), YEAR, WEEK)

    assert after["u1"] != before["u1"] and after["u2"] == before["u2"]
    assert after["u1"] == measured_from_events(two, users.get(two, "u1"))
    assert week.report_from_text(held(two, "u1")["summary"]["report"]) == after["u1"]   # and the new one is kept


def test_a_new_version_of_the_measures_measures_every_week_again(two, monkeypatch):
    timeside.weeks_for(two, people_of(two), YEAR, WEEK)
    two.events.delete_many({"user_id": "u1"})    # behind the store's back: only a new measure would see it

    monkeypatch.setattr(week, "MEASURES_VERSION", week.MEASURES_VERSION + 1)
    after = timeside.weeks_for(two, people_of(two), YEAR, WEEK)

    assert after["u1"].meetings == 0 and after["u2"].meetings == 3


def test_keeping_weeks_measures_this_week_and_the_next_once_then_only_what_changed(two):
    now = MONDAY + timedelta(days=2)                                   # a Wednesday of 2026-W10
    assert timeside.keep_weeks(two, people_of(two), now) == 4          # two people, W10 and W11
    assert timeside.keep_weeks(two, people_of(two), now) == 0          # all stored and fresh

    events_store.apply_changes(two, "u2", [graph_item("k1", MONDAY + timedelta(days=8, hours=9))], NOW)

    assert timeside.keep_weeks(two, people_of(two), now) == 2          # u2's two weeks, not u1's
    stored = two.week_summaries.find_one({"_id": "u2"})["weeks"]
    assert sorted(stored) == ["2026-10", "2026-11"]
    assert week.report_from_text(stored["2026-11"]["report"]).meetings == 1


def test_the_hourly_sweep_keeps_every_connected_persons_weeks_through_real_jobs(stack):
    from service.workers import jobs
    from tests.support.connect import connect_user, emulated_user

    ada = connect_user(stack, emulated_user(stack, mail="ada@contoso.com")["id"])
    stack.runtime.db.users.insert_one({"_id": "gone", "email": "gone@example.com",
                                       "connection": {"status": "disconnected"}})

    def this_and_next() -> list[str]:
        this = datetime.now(UTC).isocalendar()
        return [week_summaries.week_key(this.year, this.week),
                week_summaries.week_key(*week.next_week(this.year, this.week))]

    expected = this_and_next()
    assert jobs.weeks_sweep() == 1                                     # one batch: the connected person
    stack.run_jobs()

    stored = stack.runtime.db.week_summaries.find_one({"_id": ada})["weeks"]
    assert sorted(stored) in (expected, this_and_next())               # (a sweep at Sunday's midnight UTC)
    assert stack.runtime.db.week_summaries.find_one({"_id": "gone"}) is None
