"""The week's measures: hand-worked weeks (DST changes, zones, cleaning) and properties hypothesis checks."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.insights import week
from service.insights.workhours import STANDARD, WorkingHours

ME = {"me@example.com"}
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def event(start: datetime, minutes: int, graph_id: str | None = None, others=("ann@example.com",), **extra) -> dict:
    graph_id = graph_id or f"e-{start.isoformat()}-{minutes}-{len(others)}"
    return {"graph_id": graph_id, "ical_uid": extra.pop("ical_uid", graph_id), "subject": "Planning",
            "start": start.astimezone(UTC), "end": start.astimezone(UTC) + timedelta(minutes=minutes),
            "organizer": {"name": "Me", "email": "me@example.com"},
            "attendees": [{"email": e, "type": "required", "response": "accepted"} for e in others],
            "is_all_day": False, "is_cancelled": False, **extra}


def at(zone: ZoneInfo, y, m, d, hh, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=zone)


def test_an_ordinary_week_in_paris_hand_worked():
    # ISO 2026-W10: Mon 2 to Sun 8 March 2026, no DST change in Paris (it changes on 29 March).
    events = [event(at(PARIS, 2026, 3, 2, 9), 60), event(at(PARIS, 2026, 3, 2, 10, 5), 30),
              event(at(PARIS, 2026, 3, 2, 10, 40), 20),          # three with gaps of 5 and 5 minutes: a run
              event(at(PARIS, 2026, 3, 3, 14), 90), event(at(PARIS, 2026, 3, 3, 15), 60),   # 30 min double-booked
              event(at(PARIS, 2026, 3, 4, 18), 60)]              # after hours

    report = week.measure(events, ME, PARIS, 2026, 10)

    assert report.label == "2026-W10"
    assert report.meetings == 6
    assert report.seconds["meeting"] == (60 + 30 + 20 + 120 + 60) * 60   # Tuesday's two overlap into 2 h
    assert report.meeting == 4.83
    assert report.double_booked == 0.5
    assert report.after_hours == 1
    assert report.working == 40
    assert len(report.back_to_back) == 1 and len(report.back_to_back[0]) == 3
    # Monday: free 09:00 none, 11:00-17:00 (6 h focus), the 5-min gaps are fragments; Tuesday 09:00-14:00 (5 h),
    # 16:00-17:00 (1 h fragment); Wed-Fri 8 h each.
    assert report.focus == 6 + 5 + 24
    assert report.seconds["fragmented"] == (5 + 5 + 60) * 60
    assert report.heaviest_day.day.isoformat() == "2026-03-03"


def test_the_week_clocks_go_forward_is_167_hours_and_working_hours_stay_local():
    # Europe/Paris springs forward on Sunday 29 March 2026 (02:00 -> 03:00): ISO week 13 is an hour short.
    start, end = week.week_bounds(2026, 13, PARIS)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=167)
    # 09:00 Paris is 08:00 UTC on Monday 23 March and 07:00 UTC a week later: both are inside working hours.
    before = week.measure([event(at(PARIS, 2026, 3, 23, 9), 60)], ME, PARIS, 2026, 13)
    after = week.measure([event(at(PARIS, 2026, 3, 30, 9), 60)], ME, PARIS, 2026, 14)
    assert before.after_hours == after.after_hours == 0 and before.meeting == after.meeting == 1
    assert before.working == after.working == 40


def test_a_week_clocks_go_back_is_169_hours_and_a_night_meeting_spans_the_extra_hour():
    # America/New_York falls back on Sunday 1 November 2026 (02:00 -> 01:00): ISO week 44 is 169 hours.
    start, end = week.week_bounds(2026, 44, NEW_YORK)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=169)
    night = datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK)
    report = week.measure([event(night, 150)], ME, NEW_YORK, 2026, 44)   # 00:30 EDT to 02:00 EST: 2.5 h of clock

    assert report.meeting == 2.5
    assert report.after_hours == 2.5                                       # a Sunday: all outside working hours
    assert report.days[6].meeting_hours == 2.5


def test_working_hours_a_dst_change_skips_are_an_hour_shorter():
    hours = WorkingHours(time(1), time(5), tuple(range(7)), "settings")
    # 29 March 2026 in Paris: 01:00 CET to 05:00 CEST is 3 hours.
    intervals = week.working_intervals(hours, PARIS, at(PARIS, 2026, 3, 29, 0), at(PARIS, 2026, 3, 30, 0))
    assert week.length(intervals) == 3 * 3600


def test_working_hours_in_their_own_zone_shift_the_day():
    # A person in Paris whose Outlook working hours are 09:00-17:00 New York time: 15:00-23:00 in Paris.
    hours = WorkingHours(time(9), time(17), (0, 1, 2, 3, 4), "outlook", "America/New_York")
    report = week.measure([event(at(PARIS, 2026, 3, 2, 10), 60), event(at(PARIS, 2026, 3, 2, 16), 60)],
                          ME, PARIS, 2026, 10, hours)
    assert report.after_hours == 1


@pytest.mark.parametrize("change, reason", [
    ({"is_cancelled": True}, "cancelled"),
    ({"is_all_day": True}, "all_day"),
    ({"attendees": [{"email": "me@example.com", "response": "declined"}, {"email": "ann@example.com"}]}, "declined"),
    ({"attendees": []}, "alone"),
    ({"attendees": [{"email": "room@example.com", "type": "resource"}]}, "alone"),
    ({"attendees": [{"email": f"p{n}@example.com"} for n in range(25)]}, "over_25_attendees"),
])
def test_meetings_worklytics_leaves_out_are_left_out_and_counted_by_reason(change, reason):
    kept = event(at(PARIS, 2026, 3, 2, 10), 60)
    dropped = {**event(at(PARIS, 2026, 3, 2, 14), 60, graph_id="dropped"), **change}

    report = week.measure([kept, dropped], ME, PARIS, 2026, 10)

    assert report.meetings == 1 and report.meeting == 1
    assert report.left_out == {reason: 1}


def test_24_others_is_25_people_and_counts():
    big = event(at(PARIS, 2026, 3, 2, 10), 60, others=[f"p{n}@example.com" for n in range(24)])
    assert week.measure([big], ME, PARIS, 2026, 10).meetings == 1


def test_a_meeting_on_two_calendars_counts_once_and_a_private_one_counts_unnamed():
    mine = event(at(PARIS, 2026, 3, 2, 10), 60, graph_id="a", ical_uid="uid-1", sensitivity="private",
                 subject=None)
    shared_copy = {**mine, "graph_id": "b", "calendar_id": "shared"}

    report = week.measure([mine, shared_copy], ME, PARIS, 2026, 10)
    cleaned = week.clean([mine, shared_copy], ME)

    assert report.meetings == 1 and report.double_booked == 0
    assert cleaned[0].subject == "Private meeting" and cleaned[0].is_private


@pytest.mark.parametrize("raw", ["2026-W54", "2026-W00", "2025-W53", "0999-W01", "3000-W01", "2026-5", "x", "",
                                 "２０２６-W01", "2026-W٣"])
def test_weeks_that_do_not_exist_are_refused(raw):
    with pytest.raises(week.InvalidWeek):
        week.parse_week(raw)


def test_week_53_exists_when_the_year_has_one():
    assert week.parse_week("2026-W53") == (2026, 53)
    assert week.parse_week("2020w53") == (2020, 53)


# --- properties --------------------------------------------------------------------------------------------

ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
                         "Pacific/Chatham", "America/St_Johns"])
WEEKS = st.sampled_from([(2026, 10), (2026, 13), (2026, 44), (2026, 45), (2027, 1), (2026, 53)])
MEETING = st.tuples(st.integers(-24 * 60, 8 * 24 * 60), st.integers(5, 300),
                    st.sampled_from(["ok", "ok", "ok", "declined", "cancelled", "alone", "all_day"]))


def _events(zone: ZoneInfo, year: int, number: int, drawn) -> list[dict]:
    start, _ = week.week_bounds(year, number, zone)
    found = []
    for n, (offset, minutes, kind) in enumerate(drawn):
        extra = {"is_cancelled": kind == "cancelled", "is_all_day": kind == "all_day"}
        if kind == "declined":
            extra["response"] = "declined"
        others = () if kind == "alone" else ("ann@example.com",)
        found.append(event(start.astimezone(UTC) + timedelta(minutes=offset), minutes, f"g{n}", others, **extra))
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ZONES, WEEKS, st.lists(MEETING, max_size=25), st.integers(0, 6), st.integers(7, 12), st.integers(1, 10))
def test_the_measures_add_up_in_every_zone_and_week(zone_name, iso, drawn, first_day, start_hour, span):
    zone = ZoneInfo(zone_name)
    hours = WorkingHours(time(start_hour), time(min(23, start_hour + span)), tuple(range(first_day, 7)), "settings")
    events = _events(zone, *iso, drawn)

    report = week.measure(events, ME, zone, *iso, hours)
    s = report.seconds

    begins, ends = (t.astimezone(UTC) for t in week.week_bounds(*iso, zone))
    assert 167 * 3600 <= (ends - begins).total_seconds() <= 169 * 3600
    assert s["in_hours_meeting"] + s["after_hours"] == s["meeting"]
    assert s["focus"] + s["fragmented"] + s["in_hours_meeting"] == s["working"]
    assert 0 <= s["double_booked"] <= s["meeting"] <= (ends - begins).total_seconds()
    assert all(e - b >= week.FOCUS_BLOCK for b, e in report.focus_blocks)
    assert all(len(run) >= 3 for run in report.back_to_back)
    assert abs(sum(d.meeting_hours for d in report.days) - report.meeting) <= 0.04    # each rounded to 0.01 h


@settings(max_examples=100, deadline=None)
@given(ZONES, WEEKS, st.lists(MEETING, max_size=15), st.randoms(use_true_random=False))
def test_order_copies_and_left_out_meetings_change_nothing(zone_name, iso, drawn, rnd):
    zone = ZoneInfo(zone_name)
    events = _events(zone, *iso, drawn)
    baseline = week.measure(events, ME, zone, *iso)

    shuffled = list(events)
    rnd.shuffle(shuffled)
    copies = [{**e, "graph_id": "z" + e["graph_id"], "calendar_id": "shared"} for e in events]
    noise = [{**e, "graph_id": "n" + e["graph_id"], "ical_uid": "n" + e["graph_id"], "is_cancelled": True}
             for e in events]

    again = week.measure(shuffled + copies + noise, ME, zone, *iso)

    assert again.seconds == baseline.seconds
    assert again.meetings == baseline.meetings


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 200)), max_size=20),
       st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 200)), max_size=20))
def test_interval_arithmetic_matches_counting_seconds(a_raw, b_raw):
    a = week.union((s, s + n) for s, n in a_raw)
    b = week.union((s, s + n) for s, n in b_raw)
    points_a = {t for s, e in a for t in range(s, e)}
    points_b = {t for s, e in b for t in range(s, e)}
    depth: dict[int, int] = {}
    for s, n in a_raw:
        for t in range(s, s + n):
            depth[t] = depth.get(t, 0) + 1

    assert week.length(week.intersect(a, b)) == len(points_a & points_b)
    assert week.length(week.subtract(a, b)) == len(points_a - points_b)
    assert week.length(week.overlapped([(s, s + n) for s, n in a_raw])) == sum(1 for d in depth.values() if d >= 2)


def test_standard_working_hours_are_nine_to_five_monday_to_friday():
    assert STANDARD.as_doc() == {"start": "09:00", "end": "17:00", "days": [0, 1, 2, 3, 4], "source": "default"}
