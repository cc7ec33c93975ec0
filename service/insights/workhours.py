"""A person's working hours: when and on which days they work, in their zone (or the zone Outlook names).

Stored on the user as ``working_hours = {start: "09:00", end: "17:00", days: [0..4], source}`` (Monday is 0),
``source`` being ``default`` (nothing chosen: 09:00-17:00 Monday to Friday), ``settings`` (the settings page or
the API) or ``outlook`` (``mailboxSettings.workingHours``, read only when the operator turned that on). Outlook's
working hours carry their own zone; when it differs from the person's it is kept as ``time_zone``.
Overnight shifts are not modelled: the end comes after the start on the same day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from service import timezones

DEFAULT = "default"
SETTINGS = "settings"
OUTLOOK = "outlook"
SOURCES = (DEFAULT, SETTINGS, OUTLOOK)
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
GRAPH_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class InvalidWorkingHours(ValueError):
    """Working hours that cannot be stored; ``field`` names the input at fault (start, end, days, time_zone)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class WorkingHours:
    start: time
    end: time
    days: tuple[int, ...]                 # 0 = Monday … 6 = Sunday
    source: str = DEFAULT
    time_zone: str | None = None          # their own zone (Outlook's), when not the person's

    def as_doc(self) -> dict:
        doc = {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M"), "days": list(self.days),
               "source": self.source}
        if self.time_zone:
            doc["time_zone"] = self.time_zone
        return doc

    def zone(self, person_zone: ZoneInfo) -> ZoneInfo:
        return ZoneInfo(self.time_zone) if self.time_zone else person_zone

    def interval_on(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
        """[start, end) of the working day ``day`` in ``zone`` as aware datetimes, or None on a day off. A time a
        DST change skips is read as the same wall time before the change, so the day is an hour shorter."""
        if day.weekday() not in self.days:
            return None
        return datetime.combine(day, self.start, tzinfo=zone), datetime.combine(day, self.end, tzinfo=zone)

    @property
    def hours_a_day(self) -> float:
        return (self.end.hour * 60 + self.end.minute - self.start.hour * 60 - self.start.minute) / 60


STANDARD = WorkingHours(time(9), time(17), (0, 1, 2, 3, 4), DEFAULT)


def parse_clock(value: object, field: str) -> time:
    if not isinstance(value, str) or not CLOCK.match(value.strip()):
        raise InvalidWorkingHours(field, f"{field} must be a time of day like 09:00")
    hours, minutes = value.strip().split(":")
    return time(int(hours), int(minutes))


def parse_days(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or len(value) > 7:
        raise InvalidWorkingHours("days", "days must list from one to seven weekdays, 0 (Monday) to 6 (Sunday)")
    days = set()
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | str) or str(item).strip() not in "0123456" \
                or len(str(item).strip()) != 1:
            raise InvalidWorkingHours("days", "days must be weekdays from 0 (Monday) to 6 (Sunday)")
        days.add(int(str(item).strip()))
    return tuple(sorted(days))


def parse_zone(value: object) -> str | None:
    """An IANA zone name (None: the person's own zone); raises InvalidWorkingHours for one that does not exist."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or value.strip() not in timezones.iana_names():
        raise InvalidWorkingHours("time_zone", "time_zone must be an IANA time zone like Europe/Paris")
    return value.strip()


def validated(start: object, end: object, days: object, source: str = SETTINGS,
              time_zone: object = None) -> WorkingHours:
    """Working hours from input; raises InvalidWorkingHours naming the first field at fault."""
    begins, ends = parse_clock(start, "start"), parse_clock(end, "end")
    if ends <= begins:
        raise InvalidWorkingHours("end", "end must come after start on the same day")
    return WorkingHours(begins, ends, parse_days(days), source, parse_zone(time_zone))


def from_doc(doc: object) -> WorkingHours:
    """The stored working hours, or the standard ones when none (or something unreadable) is stored."""
    if not isinstance(doc, dict):
        return STANDARD
    try:
        source = doc.get("source") if doc.get("source") in SOURCES else SETTINGS
        zone = doc.get("time_zone") if isinstance(doc.get("time_zone"), str) else None
        return validated(doc.get("start"), doc.get("end"), doc.get("days"), source, zone)
    except InvalidWorkingHours:
        return STANDARD


def from_outlook(value: object, person_zone: str | None) -> WorkingHours | None:
    """Working hours from Graph's ``workingHours`` (``daysOfWeek`` names, ``startTime`` "08:00:00.0000000",
    ``timeZone.name`` Windows or IANA; a custom zone falls back to the person's), or None when unusable."""
    if not isinstance(value, dict):
        return None
    names = value.get("daysOfWeek")
    days = [GRAPH_DAYS.index(n.lower()) for n in names if isinstance(n, str) and n.lower() in GRAPH_DAYS] \
        if isinstance(names, list) else []
    zone_name = ((value.get("timeZone") or {}).get("name") if isinstance(value.get("timeZone"), dict) else None)
    iana = timezones.to_iana(zone_name) if isinstance(zone_name, str) and zone_name else None
    if iana == timezones.UTC_NAME and zone_name.upper() not in ("UTC", "GMT", "ETC/UTC", "COORDINATED UNIVERSAL TIME"):
        iana = None          # "Customized Time Zone" and other names calsync cannot map: the person's own zone
    try:
        return validated(str(value.get("startTime") or "")[:5], str(value.get("endTime") or "")[:5], days,
                         OUTLOOK, iana if iana and iana != person_zone else None)
    except InvalidWorkingHours:
        return None
