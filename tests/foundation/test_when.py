"""Times in words: the reader's zone, the day and clock people read, relative only where it helps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from service import when

NOW = datetime(2026, 12, 13, 16, 31, 53, 187000, tzinfo=UTC)


def test_a_moment_reads_as_day_and_clock_in_the_readers_zone_with_a_relative_part():
    meeting = datetime(2026, 12, 13, 18, 31, 53, 187000, tzinfo=UTC)

    assert when.moment(meeting, "UTC", now=NOW) == "Sun 13 Dec, 18:31 (in 2 hours)"
    assert when.moment(meeting, "Europe/Paris", now=NOW) == "Sun 13 Dec, 19:31 (in 2 hours)"
    assert when.moment(meeting, "Pacific/Auckland", now=NOW) == "Mon 14 Dec, 07:31 (in 2 hours)"
    assert when.moment(NOW - timedelta(days=3), "UTC", now=NOW) == "Thu 10 Dec, 16:31 (3 days ago)"


def test_far_moments_other_years_and_missing_ones():
    assert when.moment(NOW + timedelta(days=20), "UTC", now=NOW) == "Sat 2 Jan 2027, 16:31"
    assert when.moment(NOW - timedelta(days=9), "UTC", now=NOW) == "Fri 4 Dec, 16:31"
    assert when.moment(None, "UTC", now=NOW) == "never"
    assert when.moment(None, "UTC", now=NOW, missing="not yet") == "not yet"
    assert when.moment(NOW, "UTC", now=NOW, relative=False) == "Sun 13 Dec, 16:31"


def test_a_naive_value_is_read_as_utc_as_the_stores_return_it():
    assert when.moment(NOW.replace(tzinfo=None), "Asia/Kolkata", now=NOW) == "Sun 13 Dec, 22:01 (just now)"


@pytest.mark.parametrize(("delta", "words"), [
    (timedelta(seconds=10), "just now"), (timedelta(seconds=-30), "just now"),
    (timedelta(minutes=5), "in 5 minutes"), (timedelta(minutes=-1), "1 minute ago"),
    (timedelta(hours=2), "in 2 hours"), (timedelta(days=-3), "3 days ago"), (timedelta(days=-1), "1 day ago"),
])
def test_relative_times(delta, words):
    assert when.ago(NOW + delta, NOW) == words


def test_spans_durations_counts_and_zones():
    start = datetime(2026, 12, 13, 9, 0, tzinfo=UTC)

    assert when.span(start, start + timedelta(minutes=45), "UTC", now=NOW) == "Sun 13 Dec, 09:00–09:45"
    assert when.span(start, start + timedelta(hours=16), "UTC", now=NOW) == "Sun 13 Dec, 09:00–Mon 14 Dec, 01:00"
    assert [when.duration(timedelta(minutes=m)) for m in (0, 45, 60, 90, 125)] == [
        "0 min", "45 min", "1 h", "1 h 30 min", "2 h 5 min"]
    assert [when.count(n, "meeting") for n in (0, 1, 3)] == ["no meetings", "1 meeting", "3 meetings"]
    assert when.count(2, "person", "people") == "2 people"
    assert when.day(date(2025, 3, 1), now=NOW) == "Sat 1 Mar 2025"
    assert when.clock(start, "America/New_York") == "04:00"
    assert when.zone_label("Europe/Paris", now=NOW) == "Europe/Paris (UTC+01:00)"
    assert when.zone_label("Asia/Kolkata", now=NOW) == "Asia/Kolkata (UTC+05:30)"
    assert when.zone_label("nonsense", now=NOW) == "UTC (UTC+00:00)"


def test_weekdays_in_words():
    assert [when.weekdays(d) for d in ((0, 1, 2, 3, 4), tuple(range(7)), (0, 2, 5), (6,), (5, 6), ())] == [
        "Mon to Fri", "every day", "Mon, Wed and Sat", "Sun", "Sat and Sun", "no day"]
