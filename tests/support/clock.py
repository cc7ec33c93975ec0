"""Dates and hours for tests that run calsync in other processes, where no clock can be faked.

A digest, a prep or "today" depends on the local day. A test that cannot freeze time picks a zone in
which it is now about noon: "today" there then lasts hours longer than any test, whatever the machine's
date, weekday or hour.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from service.digest import plan
from service.store import users

EVERY_DAY = tuple(range(7))


def midday_zone(now: datetime | None = None) -> str:
    """An IANA zone (``Etc/GMT±N``, no DST) where the local time is now between 12:00 and 13:00."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    offset = 12 - now.hour                  # -11 … +12: every one exists as an Etc zone
    if offset == 0:
        return "UTC"
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"   # Etc names count the other way round


def local_today(zone: str, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(zone)).date()


def digest_due_today(db, user_id: str) -> None:
    """Make today's digest due now, whatever the weekday: every day, at 00:00 local, sent even when empty.

    With the user in a :func:`midday_zone`, it is then due for about eleven hours, and tomorrow's is not.
    """
    users.set_digest_preferences(db, user_id, time="00:00", days=EVERY_DAY, send_empty=True)
    plan.reschedule(db, user_id, "00:00")
