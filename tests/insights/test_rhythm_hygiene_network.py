"""1:1 rhythm, recurring-meeting hygiene and the network: hand-worked cases and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from service.insights import coaching, hygiene, network, rhythm, visibility
from service.insights.matching import Directory
from service.insights.org import Organization
from service.store.records import User
from tests.support.factories import add_event, add_people, add_user, attendee

ME = {"me@example.com"}
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
SAM = {"_id": "p-sam", "emails": ["sam@example.com"], "primary_email": "sam@example.com", "name": "Sam",
       "assessments": {"disc": {"primary": "S"}}}
CARL = {"_id": "p-carl", "emails": ["carl@example.com"], "primary_email": "carl@example.com", "name": "Carl",
        "assessments": {"disc": {"primary": "C"}, "enneagram": {"type": "5"}}}
INES = {"_id": "p-ines", "emails": ["ines@example.com"], "primary_email": "ines@example.com", "name": "Ines",
        "assessments": {"mbti16": {"type": "INFJ"}}}
DIRECTORY = Directory([SAM, CARL, INES])


def meeting(start: datetime, minutes=30, others=("sam@example.com",), gid=None, organizer="me@example.com", **extra):
    gid = gid or f"{start.isoformat()}-{'-'.join(others)}"
    return {"graph_id": gid, "ical_uid": gid, "subject": "1:1", "start": start,
            "end": start + timedelta(minutes=minutes),
            "organizer": {"email": organizer}, "attendees": [{"email": o, "response": "accepted"} for o in others],
            **extra}


def weekly(person: str, last: datetime, count: int, every_days: int = 7) -> list[dict]:
    return [meeting(last - timedelta(days=every_days * n), others=(person,)) for n in range(count)]


def test_a_weekly_one_to_one_three_weeks_late_is_overdue_with_a_tip_for_a_steady_person():
    events = weekly("sam@example.com", NOW - timedelta(days=21), 6)

    found = rhythm.rhythms(events, ME, DIRECTORY, NOW)

    sam = found[0]
    assert (sam.email, sam.usual_days, sam.one_on_ones, sam.overdue) == ("sam@example.com", 7.0, 6, True)
    assert sam.overdue_days == 21 - 10.5
    assert sam.tip.framework == "disc" and "high-S" in sam.tip.text


def test_one_to_one_just_inside_one_and_a_half_intervals_is_not_overdue():
    events = weekly("sam@example.com", NOW - timedelta(days=10), 4)

    sam = rhythm.rhythms(events, ME, DIRECTORY, NOW)[0]

    assert not sam.overdue and sam.tip is None and sam.last == NOW - timedelta(days=10)


def test_the_manager_is_listed_even_without_any_one_to_one_and_group_meetings_are_not_one_to_ones():
    events = [meeting(NOW - timedelta(days=2), others=("sam@example.com", "carl@example.com"))]

    found = rhythm.rhythms(events, ME, DIRECTORY, NOW, manager_email="carl@example.com")

    carl = next(r for r in found if r.email == "carl@example.com")
    assert carl.is_manager and carl.one_on_ones == 0 and carl.usual_days is None and not carl.overdue


def test_the_tip_follows_the_first_framework_the_person_has():
    assert "agenda" in rhythm.rhythm_tip(CARL, "x").text
    assert rhythm.rhythm_tip(INES, "x").framework == "mbti16"
    assert rhythm.rhythm_tip(None, "x").framework == "time"


def test_a_private_person_gets_no_tip():
    events = weekly("sam@example.com", NOW - timedelta(days=21), 6)
    viewer = User("u", "me@example.com")

    sam = rhythm.rhythms(events, ME, Directory([{**SAM, "visibility": "private"}]), NOW,
                         shown=lambda person: visibility.shows(viewer, person))[0]

    assert sam.overdue and sam.tip is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=10), st.integers(1, 120))
def test_overdue_exactly_when_the_gap_passes_one_and_a_half_times_the_median(gaps, since_last):
    last = NOW - timedelta(days=since_last)
    starts = [last]
    for gap in gaps:
        starts.append(starts[-1] - timedelta(days=gap))
    events = [meeting(s, others=("sam@example.com",)) for s in starts]

    sam = rhythm.rhythms(events, ME, DIRECTORY, NOW)[0]

    ordered = sorted(gaps)
    median = (ordered[len(ordered) // 2] + ordered[(len(ordered) - 1) // 2]) / 2
    assert sam.usual_days == median
    assert sam.overdue == (since_last > 1.5 * median)


def test_series_hygiene_names_each_problem_and_its_cost():
    master = "series-1"
    crowd = tuple(f"p{n}@example.com" for n in range(9))
    events = [meeting(NOW + timedelta(days=7 * n), 90, crowd, gid=f"s{n}", series_master_id=master)
              for n in range(-3, 5)]
    events.append(meeting(NOW - timedelta(days=1), 30, gid="one-off"))

    found = hygiene.review(events, ME, NOW, horizon=NOW + timedelta(days=35))

    series = found.series[0]
    assert [s["problem"] for s in series.suggestions] == ["no_end_date", "too_many_attendees", "too_long"]
    assert (series.attendees, series.minutes, series.interval_days) == (10, 90, 7.0)
    assert series.attendee_hours_a_month == round(10 * 1.5 * 30.44 / 7, 1)
    # Past 28 days: three 90-min occurrences against one 30-min one-off.
    assert found.recurring_share == round(270 / 300, 3)


def test_a_series_someone_else_organises_is_not_reviewed_and_one_that_ends_has_no_end_problem():
    theirs = [meeting(NOW + timedelta(days=7 * n), organizer="sam@example.com", gid=f"t{n}", series_master_id="t")
              for n in range(3)]
    mine = [meeting(NOW - timedelta(days=7 * n), gid=f"m{n}", series_master_id="m") for n in range(3)]

    found = hygiene.review(theirs + mine, ME, NOW, horizon=NOW + timedelta(days=35))

    assert [s.series_id for s in found.series] == ["m"]
    assert found.series[0].suggestions == []


def test_network_shares_by_style_inside_and_outside_and_new_and_fading():
    org = Organization(frozenset({"example.com"}))
    events = [meeting(NOW - timedelta(days=3), 60, ("sam@example.com", "guest@fabrikam.com")),
              meeting(NOW - timedelta(days=5), 60, ("carl@example.com",)),
              meeting(NOW - timedelta(days=40), 30, ("ines@example.com",)),
              meeting(NOW - timedelta(days=45), 30, ("ines@example.com",)),
              meeting(NOW - timedelta(days=35), 30, ("carl@example.com",))]

    found = network.analyse(events, ME, DIRECTORY, org, NOW)

    assert found.hours == 2
    assert found.styles["disc"] == {"C": 0.5, "S": 0.25, "unknown": 0.25}
    assert (found.internal, found.external) == (0.75, 0.25)
    assert {n["email"] for n in found.new} == {"sam@example.com", "guest@fabrikam.com"}
    assert [f["email"] for f in found.fading] == ["ines@example.com"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 27 * 24), st.integers(15, 120),
                          st.lists(st.sampled_from(["sam@example.com", "carl@example.com", "ines@example.com",
                                                    "x@fabrikam.com"]), min_size=1, max_size=4, unique=True)),
                max_size=20))
def test_network_shares_sum_to_one_for_every_framework(drawn):
    events = [meeting(NOW - timedelta(hours=h), m, tuple(o), gid=f"n{i}") for i, (h, m, o) in enumerate(drawn)]

    found = network.analyse(events, ME, DIRECTORY, Organization(frozenset({"example.com"})), NOW)

    for shares in found.styles.values():
        assert not drawn or abs(sum(shares.values()) - 1) < 0.01
    assert not drawn or abs(found.internal + found.external - 1) < 0.01


def test_coaching_suggests_the_overdue_one_to_one_with_the_rhythm_tip(db):
    add_people(db)
    me = add_user(db)
    for n in range(4):
        start = NOW - timedelta(days=21 + 7 * n)
        add_event(db, me.id, f"o{n}", start, start + timedelta(minutes=30), attendees=[attendee("ben@example.com")])

    found = coaching.suggest(db, me, NOW.date(), now=NOW, record=False)

    ben = next(s for s in found if s.email == "ben@example.com")
    assert ben.reason == coaching.OVERDUE and ben.why == "your 1:1 is a week overdue (usually every 7 days)"
    assert ben.tip == rhythm.rhythm_tip({"assessments": {"disc": {"primary": "D"}}}, "")


def test_a_meeting_whose_attendee_list_is_hidden_is_no_one_to_one_and_no_network_time():
    hidden = [meeting(NOW - timedelta(days=7 * n), others=("sam@example.com", "carl@example.com"),
                      organizer="sam@example.com", gid=f"h{n}", hide_attendees=True) for n in range(1, 4)]

    assert rhythm.one_on_ones(hidden, ME, DIRECTORY) == {}
    assert network.analyse(hidden, ME, DIRECTORY, None, NOW).hours == 0


def test_the_masters_range_decides_no_end_date_when_known():
    events = [meeting(NOW + timedelta(days=7 * n), gid=f"r{n}", series_master_id="r") for n in range(-2, 5)]
    horizon = NOW + timedelta(days=35)

    ends = hygiene.review(events, ME, NOW, horizon, ranges={"r": {"range_type": "endDate", "end_date": "2026-07-20"}})
    endless = hygiene.review(events[:2], ME, NOW, horizon, ranges={"r": {"range_type": "noEnd", "end_date": None}})

    assert not ends.series[0].no_end_date and endless.series[0].no_end_date
