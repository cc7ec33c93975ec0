from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from service.digest.schedule import next_send, parse_clock, send_instant, send_time
from service.insights.days import day_bounds, user_zone
from service.store.records import WEEKDAYS, DigestSettings, User

SEND = time(6, 30)


@pytest.mark.parametrize(("zone", "day", "instant"), [
    ("Pacific/Honolulu", date(2026, 7, 1), datetime(2026, 7, 1, 16, 30, tzinfo=UTC)),     # UTC-10
    ("Pacific/Tongatapu", date(2026, 7, 2), datetime(2026, 7, 1, 17, 30, tzinfo=UTC)),    # UTC+13: the day before
    ("America/New_York", date(2026, 3, 8), datetime(2026, 3, 8, 10, 30, tzinfo=UTC)),     # spring forward: EDT
    ("America/New_York", date(2026, 3, 7), datetime(2026, 3, 7, 11, 30, tzinfo=UTC)),     # the day before: EST
    ("America/New_York", date(2026, 11, 1), datetime(2026, 11, 1, 11, 30, tzinfo=UTC)),   # fall back: EST
])
def test_a_local_days_digest_goes_out_at_its_local_send_time(zone, day, instant):
    assert send_instant(ZoneInfo(zone), SEND, day) == instant


def test_a_send_time_inside_the_spring_forward_gap_goes_out_just_after_it():
    # 02:30 does not exist on 2026-03-08 in New York; it reads as 02:30 EST, which is 03:30 EDT.
    assert send_instant(ZoneInfo("America/New_York"), time(2, 30), date(2026, 3, 8)) == datetime(
        2026, 3, 8, 7, 30, tzinfo=UTC)


def test_the_next_digest_is_today_unless_today_was_handled():
    zone, noon = ZoneInfo("Europe/Paris"), datetime(2026, 7, 1, 10, 0, tzinfo=UTC)

    assert next_send(zone, SEND, noon, None) == (date(2026, 7, 1), datetime(2026, 7, 1, 4, 30, tzinfo=UTC))
    assert next_send(zone, SEND, noon, date(2026, 7, 1)) == (date(2026, 7, 2), datetime(2026, 7, 2, 4, 30,
                                                                                           tzinfo=UTC))
    assert next_send(zone, SEND, noon, date(2026, 6, 20))[0] == date(2026, 7, 1)   # long ago: today, not a backlog


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25), (date(2026, 6, 1), 24)])
def test_local_days_are_23_or_25_hours_on_dst_changes(day, hours):
    start, end = day_bounds(ZoneInfo("America/New_York"), day)

    assert (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() == hours * 3600


def test_user_zone_prefers_setting_then_graph_windows_name_then_utc():
    assert user_zone(User("u", time_zone="Europe/Paris", graph_time_zone="Tokyo Standard Time")).key == "Europe/Paris"
    assert user_zone(User("u", graph_time_zone="Tokyo Standard Time")).key == "Asia/Tokyo"
    assert user_zone(User("u")).key == "UTC"


@pytest.mark.parametrize(("value", "expected"), [("07:05", time(7, 5)), ("7:5", time(7, 5)), ("25:00", time(6, 30)),
                                                 ("", time(6, 30)), (None, time(6, 30)), ("ab:cd", time(6, 30))])
def test_parse_clock_falls_back_to_default(value, expected):
    assert parse_clock(value, "06:30") == expected
    assert send_time(User("u", digest=DigestSettings(time=value)), "06:30") == expected


def test_the_next_digest_skips_the_days_the_user_left_out():
    zone = ZoneInfo("Europe/Paris")
    friday_noon = datetime(2026, 7, 3, 10, 0, tzinfo=UTC)

    assert next_send(zone, SEND, friday_noon, date(2026, 7, 3), WEEKDAYS)[0] == date(2026, 7, 6)   # Monday
    assert next_send(zone, SEND, friday_noon, None, (5,))[0] == date(2026, 7, 4)                  # Saturday
    assert next_send(zone, SEND, friday_noon, None, ()) is None
    assert User("u").digest.days == WEEKDAYS
    assert DigestSettings.from_doc({"days": [6, 6, "x", 9, True]}).days == (6,)
    assert DigestSettings.from_doc({"days": []}).days == WEEKDAYS
