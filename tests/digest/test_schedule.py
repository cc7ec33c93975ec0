from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from service.digest.schedule import day_bounds, due_date, parse_clock, send_time, user_zone

SEND = time(6, 30)


@pytest.mark.parametrize(("zone", "utc_now", "expected"), [
    # UTC-10 (Honolulu): 06:30 local is 16:30 UTC the same date
    ("Pacific/Honolulu", datetime(2026, 7, 1, 16, 29, tzinfo=UTC), None),
    ("Pacific/Honolulu", datetime(2026, 7, 1, 16, 30, tzinfo=UTC), date(2026, 7, 1)),
    # UTC+13 (Tonga): 06:30 local on the 2nd is 17:30 UTC on the 1st
    ("Pacific/Tongatapu", datetime(2026, 7, 1, 17, 29, tzinfo=UTC), None),
    ("Pacific/Tongatapu", datetime(2026, 7, 1, 17, 30, tzinfo=UTC), date(2026, 7, 2)),
    ("Pacific/Tongatapu", datetime(2026, 7, 1, 10, 59, tzinfo=UTC), date(2026, 7, 1)),
    # New York spring-forward day (2026-03-08): EDT from 03:00, so 06:30 is 10:30 UTC
    ("America/New_York", datetime(2026, 3, 8, 10, 29, tzinfo=UTC), None),
    ("America/New_York", datetime(2026, 3, 8, 10, 30, tzinfo=UTC), date(2026, 3, 8)),
    # fall-back day (2026-11-01): EST from 02:00, so 06:30 is 11:30 UTC
    ("America/New_York", datetime(2026, 11, 1, 11, 29, tzinfo=UTC), None),
    ("America/New_York", datetime(2026, 11, 1, 11, 30, tzinfo=UTC), date(2026, 11, 1)),
])
def test_due_date_is_the_local_date_once_local_send_time_passed(zone, utc_now, expected):
    assert due_date(ZoneInfo(zone), SEND, utc_now) == expected


def test_send_time_inside_the_spring_forward_gap_is_due_right_after_it():
    zone = ZoneInfo("America/New_York")

    assert due_date(zone, time(2, 30), datetime(2026, 3, 8, 6, 59, tzinfo=UTC)) is None  # 01:59 EST
    assert due_date(zone, time(2, 30), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)) == date(2026, 3, 8)  # 03:00 EDT


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25), (date(2026, 6, 1), 24)])
def test_local_days_are_23_or_25_hours_on_dst_changes(day, hours):
    start, end = day_bounds(ZoneInfo("America/New_York"), day)

    assert (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() == hours * 3600


def test_user_zone_prefers_setting_then_graph_windows_name_then_utc():
    assert user_zone({"time_zone": "Europe/Paris", "graph_time_zone": "Tokyo Standard Time"}).key == "Europe/Paris"
    assert user_zone({"time_zone": None, "graph_time_zone": "Tokyo Standard Time"}).key == "Asia/Tokyo"
    assert user_zone({}).key == "UTC"


@pytest.mark.parametrize(("value", "expected"), [("07:05", time(7, 5)), ("7:5", time(7, 5)), ("25:00", time(6, 30)),
                                                 ("", time(6, 30)), (None, time(6, 30)), ("ab:cd", time(6, 30))])
def test_parse_clock_falls_back_to_default(value, expected):
    assert parse_clock(value, "06:30") == expected
    assert send_time({"digest": {"time": value}}, "06:30") == expected
