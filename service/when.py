"""Times for people: "Sun 13 Dec, 18:31" in the reader's own zone, with "in 2 hours" or "3 days ago" where
it helps, and durations and counts in words ("1 h 30 min", "1 meeting", "3 meetings").

Machines get ISO 8601 with ``Z`` (the API, webhooks); people get these. Formatting goes through Babel (CLDR
data) rather than ``strftime``: ``strftime`` follows the process's locale (a server set to ``de_DE`` would
write "So 13 Dez"), and CLDR also gives the relative units ("in 2 hours", "yesterday"-style rounding) that a
hand-written table would get subtly wrong at the edges. One locale for now (British English: day before
month, 24-hour clock); a per-person locale would be one argument more.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_timedelta

from service import timezones

LOCALE = "en_GB"
JUST_NOW = timedelta(seconds=45)
RELATIVE_WITHIN = timedelta(days=7)    # past this, the date says enough


def _zone(zone: ZoneInfo | str | None) -> ZoneInfo:
    return zone if isinstance(zone, ZoneInfo) else timezones.zone(zone)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)   # stored times are UTC


def local(value: datetime, zone: ZoneInfo | str | None) -> datetime:
    """``value`` in ``zone`` (a naive value is read as UTC, as the stores return it)."""
    return _aware(value).astimezone(_zone(zone))


def clock(value: datetime, zone: ZoneInfo | str | None = None) -> str:
    """"18:31" (in ``zone`` when given, else in the value's own zone)."""
    value = local(value, zone) if zone is not None else value
    return format_datetime(value, "HH:mm", tzinfo=value.tzinfo, locale=LOCALE)


def day(value: date | datetime, zone: ZoneInfo | str | None = None, now: datetime | None = None) -> str:
    """"Sun 13 Dec" ("Sun 13 Dec 2025" outside the current year)."""
    if isinstance(value, datetime):
        value = local(value, zone).date() if zone is not None else value.date()
    this_year = (now or datetime.now(UTC)).year
    return format_date(value, "EEE d MMM" if value.year == this_year else "EEE d MMM y", locale=LOCALE)


def ago(value: datetime, now: datetime | None = None) -> str:
    """"in 2 hours", "3 days ago", "just now"."""
    delta = _aware(value) - (now or datetime.now(UTC))
    if abs(delta) < JUST_NOW:
        return "just now"
    return format_timedelta(delta, add_direction=True, threshold=1, locale=LOCALE)


def moment(value: datetime | None, zone: ZoneInfo | str | None, now: datetime | None = None,
           relative: bool = True, missing: str = "never") -> str:
    """"Sun 13 Dec, 18:31 (in 2 hours)" in ``zone``; the relative part only within a week of ``now``."""
    if value is None:
        return missing
    now = now or datetime.now(UTC)
    here = local(value, zone)
    text = f"{day(here, now=now)}, {clock(here)}"
    if relative and abs(_aware(value) - now) < RELATIVE_WITHIN:
        text += f" ({ago(value, now)})"
    return text


def span(start: datetime, end: datetime, zone: ZoneInfo | str | None, now: datetime | None = None) -> str:
    """"Sun 13 Dec, 18:30–19:00" (both ends on the day of the start; a later end day is named)."""
    first, last = local(start, zone), local(end, zone)
    until = clock(last) if last.date() == first.date() else f"{day(last, now=now)}, {clock(last)}"
    return f"{day(first, now=now)}, {clock(first)}–{until}"


def duration(value: timedelta | float) -> str:
    """"45 min", "2 h", "1 h 30 min" (seconds or a timedelta, rounded to the minute)."""
    minutes = round((value.total_seconds() if isinstance(value, timedelta) else value) / 60)
    hours, minutes = divmod(max(minutes, 0), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" if not minutes else f"{hours} h {minutes} min"


def count(n: int, singular: str, plural: str | None = None) -> str:
    """"1 meeting", "3 meetings", "no meetings"."""
    word = singular if n == 1 else (plural or singular + "s")
    return f"{'no' if n == 0 else n} {word}"


def zone_label(zone: ZoneInfo | str | None, now: datetime | None = None) -> str:
    """"Europe/Paris (UTC+01:00)": the zone's name with its offset now."""
    found = _zone(zone)
    offset = (now or datetime.now(UTC)).astimezone(found).strftime("%z")
    sign, hours, minutes = offset[:1] or "+", offset[1:3] or "00", offset[3:5] or "00"
    return f"{found.key} (UTC{sign}{hours}:{minutes})"


WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def weekdays(chosen: tuple[int, ...] | list[int]) -> str:
    """Weekday numbers (0 = Monday) in words: "every day", "Mon to Fri", "Mon, Wed and Sat"."""
    chosen = sorted(set(chosen))
    if len(chosen) == 7:
        return "every day"
    if not chosen:
        return "no day"
    if len(chosen) > 2 and chosen == list(range(chosen[0], chosen[-1] + 1)):
        return f"{WEEKDAY_NAMES[chosen[0]]} to {WEEKDAY_NAMES[chosen[-1]]}"
    names = [WEEKDAY_NAMES[d] for d in chosen]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
