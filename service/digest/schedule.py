"""When a digest is due: pure functions of (zone, clock time, now)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from service.store.records import User


def parse_clock(value: str | None, default: str = "06:30") -> time:
    """"HH:MM" as a time; anything malformed falls back to ``default``."""
    for candidate in (value, default):
        if isinstance(candidate, str):
            hours, _, minutes = candidate.strip().partition(":")
            if hours.isdecimal() and minutes.isdecimal() and int(hours) < 24 and int(minutes) < 60:
                return time(int(hours), int(minutes))
    return time(6, 30)


def send_time(user: User, default: str) -> time:
    return parse_clock(user.digest.time, default)


def send_instant(zone: ZoneInfo, send_at: time, day: date) -> datetime:
    """When a local day's digest goes out, in UTC. A send time inside a spring-forward gap reads with the
    offset before the change (02:30 on the gap day is 03:30 after it); in a repeated hour, the first one."""
    return datetime.combine(day, send_at, tzinfo=zone).astimezone(UTC)


EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)


def next_send(zone: ZoneInfo, send_at: time, now: datetime, last_date: date | None,
              days: tuple[int, ...] = EVERY_DAY) -> tuple[date, datetime] | None:
    """The next local date to send (today, unless today's digest was already handled, or the first of the
    chosen weekdays after it) and its UTC instant; None when no weekday is chosen.

    Today counts even when its send time has passed: a user who connects at noon gets today's digest now.
    """
    if not days:
        return None
    day = now.astimezone(zone).date()
    if last_date is not None and last_date >= day:
        day = last_date + timedelta(days=1)
    while day.weekday() not in days:
        day += timedelta(days=1)
    return day, send_instant(zone, send_at, day)
