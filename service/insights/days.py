"""A person's local day: their zone, and a local day's bounds (23 or 25 hours long on DST days)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from service import timezones
from service.store.records import User


def user_zone(user: User) -> ZoneInfo:
    """The user's zone: their setting or the sync's inference (IANA or Windows), else UTC."""
    return timezones.zone(user.time_zone or user.graph_time_zone)


def day_bounds(zone: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    """[start, end) of a local day as aware datetimes in ``zone`` (23 or 25 hours long on DST days)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end
