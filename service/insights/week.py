"""The week of one person, in their zone: where the time went (pure; the stores are read by ``timeside``).

An ISO week runs from Monday 00:00 to the next Monday 00:00 local time (167 or 169 hours when a DST change
falls in it). Meetings are cleaned as Worklytics documents it before anything is measured: declined, cancelled
and all-day meetings are out, so are meetings with nobody else ("alone") and meetings of more than 25 people;
a meeting on two calendars counts once (``meetings.usable``); a private meeting counts, under "Private
meeting" only; what the person excluded never reaches here (``meetings.in_window`` leaves it out).

The measures, in hours:
- ``meeting``: time in at least one meeting (two overlapping meetings count their overlap once);
- ``double_booked``: time in two meetings or more at once;
- ``after_hours``: meeting time outside working hours;
- ``focus``: free time inside working hours in blocks of at least 2 hours; ``fragmented``: free blocks shorter;
- ``back_to_back``: runs of three meetings or more with under 10 minutes between one's end and the next start.
Intervals are whole seconds since the epoch, so the arithmetic is exact and the same in every zone.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from service.insights import meetings
from service.insights.matching import RESOURCE_TYPES, attendees_hidden, user_response
from service.insights.workhours import STANDARD, WorkingHours
from service.store import as_utc
from service.store.exclusions import Excluded

MAX_ATTENDEES = 25
ROOMS = frozenset(RESOURCE_TYPES)
FOCUS_BLOCK = 2 * 3600
BACK_TO_BACK_GAP = 10 * 60
BACK_TO_BACK_RUN = 3
MIN_ISO_YEAR, MAX_ISO_YEAR = 1901, 2999
# The version of the measures below: part of every stored week's fingerprint (``service.store.weeks``), so a
# change of what a week means recomputes every stored week on its next read. Raise it with any such change.
MEASURES_VERSION = 1

Interval = tuple[int, int]


class InvalidWeek(ValueError):
    """An ISO week that does not exist ("2026-W54") or is not written YYYY-Www."""


@dataclass(frozen=True)
class Meeting:
    """One cleaned meeting: what the week's measures need, and a name safe to show."""

    key: str
    start: int
    end: int
    subject: str
    people: tuple[str, ...]       # the other attendees' addresses (lower case), organizer included
    is_private: bool = False
    hidden: bool = False          # the organizer hid the attendee list: who was there is unknown

    @property
    def start_at(self) -> datetime:
        return datetime.fromtimestamp(self.start, UTC)


@dataclass
class DayLoad:
    day: date
    meeting_hours: float
    meetings: int
    working_hours: float


@dataclass
class WeekReport:
    """A person's ISO week, measured in hours."""

    iso_year: int
    iso_week: int
    zone: str
    start: datetime               # local Monday 00:00
    end: datetime                 # the next Monday 00:00
    meetings: int
    meeting: float
    focus: float
    fragmented: float
    after_hours: float
    double_booked: float
    working: float                # working hours in the week
    back_to_back: list[list[Meeting]] = field(default_factory=list)
    days: list[DayLoad] = field(default_factory=list)
    focus_blocks: list[Interval] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)    # why meetings were not counted: reason -> count
    seconds: dict[str, int] = field(default_factory=dict)     # the measures exactly, before rounding to hours

    @property
    def label(self) -> str:
        return f"{self.iso_year}-W{self.iso_week:02d}"

    @property
    def heaviest_day(self) -> DayLoad | None:
        busiest = max(self.days, key=lambda d: (d.meeting_hours, -d.day.toordinal()), default=None)
        return busiest if busiest and busiest.meeting_hours > 0 else None

    def as_dict(self) -> dict:
        return {
            "week": self.label, "time_zone": self.zone, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "meetings": self.meetings,
            "hours": {"meeting": self.meeting, "focus": self.focus, "fragmented": self.fragmented,
                      "after_hours": self.after_hours, "double_booked": self.double_booked, "working": self.working},
            "back_to_back": [{"meetings": len(run), "start": _iso(run[0].start), "end": _iso(max(m.end for m in run))}
                             for run in self.back_to_back],
            "days": [{"date": d.day.isoformat(), "meeting_hours": d.meeting_hours, "meetings": d.meetings,
                      "working_hours": d.working_hours} for d in self.days],
            "left_out": dict(sorted(self.left_out.items())),
        }


# --- weeks -------------------------------------------------------------------------------------------------

def parse_week(value: str) -> tuple[int, int]:
    """(ISO year, week) from "2026-W05" (or "2026W05"); raises InvalidWeek for a week that does not exist."""
    text = (value or "").strip().upper().replace("-W", "W")
    year_text, _, week_text = text.partition("W")
    if not (year_text.isascii() and year_text.isdigit() and len(year_text) == 4 and week_text.isascii()
            and week_text.isdigit() and 1 <= len(week_text) <= 2):
        raise InvalidWeek("week must be an ISO week like 2026-W05")
    year, week = int(year_text), int(week_text)
    if not MIN_ISO_YEAR <= year <= MAX_ISO_YEAR:
        raise InvalidWeek(f"week must be in the years {MIN_ISO_YEAR} to {MAX_ISO_YEAR}")
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        raise InvalidWeek(f"{year} has no ISO week {week}") from None
    return year, week


def week_of(instant: datetime, zone: ZoneInfo) -> tuple[int, int]:
    """The ISO (year, week) an instant falls in, in ``zone``."""
    year, week, _ = instant.astimezone(zone).isocalendar()
    return year, week


def week_bounds(year: int, week: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    monday = date.fromisocalendar(year, week, 1)
    start = datetime.combine(monday, datetime.min.time(), tzinfo=zone)
    return start, datetime.combine(monday + timedelta(days=7), datetime.min.time(), tzinfo=zone)


def next_week(year: int, week: int) -> tuple[int, int]:
    following = date.fromisocalendar(year, week, 1) + timedelta(days=7)
    iso = following.isocalendar()
    return iso[0], iso[1]


# --- cleaning ----------------------------------------------------------------------------------------------

def others(event: dict, me: set[str]) -> list[str]:
    """The other people in a meeting (organizer included, rooms out), by address; of a meeting whose list the
    organizer hid, only the organizer."""
    found: dict[str, None] = {}
    organizer = ((event.get("organizer") or {}).get("email") or "").strip().lower()
    if organizer and organizer not in me:
        found[organizer] = None
    if not attendees_hidden(event, me):
        for attendee in event.get("attendees") or ():
            email = attendee.get("email")
            if email:
                email = email.strip().lower()
                if email not in me and email not in found and (attendee.get("type") or "").lower() not in ROOMS:
                    found[email] = None
    return list(found)


def leave_out(event: dict, me: set[str], people: list[str] | None = None) -> str | None:
    """Why a meeting does not count for the week (None when it does); ``people``: its ``others`` if known."""
    if event.get("is_cancelled"):
        return "cancelled"
    if event.get("is_all_day"):
        return "all_day"
    if user_response(event, me) == "declined":
        return "declined"
    people = others(event, me) if people is None else people
    if not people:
        return "alone"
    if len(people) + 1 > MAX_ATTENDEES:
        return "over_25_attendees"
    return None


def clean(events: Iterable[dict], me: set[str], left_out: dict[str, int] | None = None,
          excluded: Excluded | None = None) -> list[Meeting]:
    """The meetings that count, once each, earliest first (none the person ``excluded``); ``left_out`` (if given)
    counts the others by reason."""
    kept: list[Meeting] = []
    for event in meetings.usable(events, excluded):
        people = others(event, me)
        reason = leave_out(event, me, people)
        start, end = _seconds(event.get("start")), _seconds(event.get("end"))
        if reason is None and (start is None or end is None or end <= start):
            reason = "no_duration"
        if reason:
            if left_out is not None:
                left_out[reason] = left_out.get(reason, 0) + 1
            continue
        kept.append(Meeting(event.get("ical_uid") or event.get("graph_id") or "", start, end,
                            meetings.subject_of(event), tuple(people), meetings.is_private(event),
                            attendees_hidden(event, me)))
    return sorted(kept, key=lambda m: (m.start, m.end, m.key))


# --- interval arithmetic ----------------------------------------------------------------------------------

def union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[list[int]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """The overlap of two sorted, disjoint interval lists."""
    found, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            found.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return found


def subtract(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """``a`` less ``b`` (both sorted and disjoint); pieces of one interval of ``a`` stay apart."""
    found: list[Interval] = []
    j = 0
    for start, end in a:
        cursor = start
        while j < len(b) and b[j][1] <= cursor:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cursor:
                found.append((cursor, b[k][0]))
            cursor = max(cursor, b[k][1])
            k += 1
        if cursor < end:
            found.append((cursor, end))
    return found


def overlapped(intervals: Iterable[Interval]) -> list[Interval]:
    """Where two intervals or more overlap."""
    points = sorted([(s, 1) for s, e in intervals if e > s] + [(e, -1) for s, e in intervals if e > s],
                    key=lambda p: (p[0], p[1]))
    found: list[Interval] = []
    depth, since = 0, 0
    for at, step in points:
        if depth < 2 <= depth + step:
            since = at
        elif depth >= 2 > depth + step and at > since:
            found.append((since, at))
        depth += step
    return union(found)


def length(intervals: Iterable[Interval]) -> int:
    return sum(e - s for s, e in intervals)


def runs(items: list[Meeting], gap: int = BACK_TO_BACK_GAP, least: int = BACK_TO_BACK_RUN) -> list[list[Meeting]]:
    """Runs of at least ``least`` meetings, each starting less than ``gap`` after the run so far ended."""
    found: list[list[Meeting]] = []
    current: list[Meeting] = []
    ends = 0
    for meeting in sorted(items, key=lambda m: (m.start, m.end)):
        if current and meeting.start - ends < gap:
            current.append(meeting)
            ends = max(ends, meeting.end)
            continue
        if len(current) >= least:
            found.append(current)
        current, ends = [meeting], meeting.end
    if len(current) >= least:
        found.append(current)
    return found


# --- the week ----------------------------------------------------------------------------------------------

def working_intervals(hours: WorkingHours, person_zone: ZoneInfo, start: datetime, end: datetime) -> list[Interval]:
    """The working hours falling in [start, end), as epoch-second intervals (their own zone's days)."""
    zone = hours.zone(person_zone)
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    found = []
    day = first
    while day <= last:
        interval = hours.interval_on(day, zone)
        if interval:
            found.append((_epoch(interval[0]), _epoch(interval[1])))
        day += timedelta(days=1)
    return intersect(union(found), [(_epoch(start), _epoch(end))])


def measure(events: Iterable[dict], me: set[str], zone: ZoneInfo, year: int, week: int,
            hours: WorkingHours = STANDARD, excluded: Excluded | None = None) -> WeekReport:
    """Measure one ISO week of a person's meetings (``events``: stored events overlapping it, less those they
    ``excluded``)."""
    start, end = week_bounds(year, week, zone)
    bounds = [(_epoch(start), _epoch(end))]
    left_out: dict[str, int] = {}
    inside = [m for m in clean(events, me, left_out, excluded) if m.end > bounds[0][0] and m.start < bounds[0][1]]
    clipped = [(max(m.start, bounds[0][0]), min(m.end, bounds[0][1])) for m in inside]
    busy = union(clipped)
    working = working_intervals(hours, zone, start, end)
    free = subtract(working, busy)
    focus = [b for b in free if b[1] - b[0] >= FOCUS_BLOCK]
    exact = {"meeting": length(busy), "focus": length(focus), "fragmented": length(free) - length(focus),
             "after_hours": length(subtract(busy, working)), "double_booked": length(overlapped(clipped)),
             "working": length(working), "in_hours_meeting": length(intersect(busy, working))}
    report = WeekReport(
        year, week, zone.key, start, end, len(inside), _hours(exact["meeting"]), _hours(exact["focus"]),
        _hours(exact["fragmented"]), _hours(exact["after_hours"]), _hours(exact["double_booked"]),
        _hours(exact["working"]), runs(inside), [], focus, left_out, exact)
    report.days = _days(inside, busy, working, zone, start)
    return report


def _days(inside: list[Meeting], busy: list[Interval], working: list[Interval], zone: ZoneInfo,
          start: datetime) -> list[DayLoad]:
    """Each local day's meeting hours, meetings begun and working hours (days 23 or 25 hours long on DST changes)."""
    monday = start.date()
    days = [monday + timedelta(days=n) for n in range(7)]
    edges = [_epoch(datetime.combine(d, datetime.min.time(), tzinfo=zone)) for d in days]
    edges.append(_epoch(datetime.combine(monday + timedelta(days=7), datetime.min.time(), tzinfo=zone)))
    busy_by_day, working_by_day, counts = _spread(busy, edges), _spread(working, edges), [0] * 7
    for meeting in inside:
        n = bisect_right(edges, meeting.start) - 1
        if 0 <= n < 7:
            counts[n] += 1
    return [DayLoad(days[n], _hours(busy_by_day[n]), counts[n], _hours(working_by_day[n])) for n in range(7)]


def _spread(intervals: list[Interval], edges: list[int]) -> list[int]:
    """Seconds of ``intervals`` falling between each pair of consecutive ``edges``."""
    found = [0] * (len(edges) - 1)
    for begins, ends in intervals:
        n = max(0, bisect_right(edges, begins) - 1)
        while n < len(found) and edges[n] < ends:
            found[n] += max(0, min(ends, edges[n + 1]) - max(begins, edges[n]))
            n += 1
    return found


def _seconds(value: object) -> int | None:
    return _epoch(as_utc(value)) if isinstance(value, datetime) else None


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _hours(seconds: int) -> float:
    return round(seconds / 3600, 2)


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


# --- stored ------------------------------------------------------------------------------------------------

def report_text(report: WeekReport) -> str:
    """A finished week as stored (``service.store.weeks``): one compact JSON string, not a nested document; the
    wire server decodes and matches every element of what it reads, and a week's runs of meetings are hundreds
    of them (measured, 500 stored weeks: 2.5 s as documents, see bench/RESULTS.md P9)."""
    return json.dumps(report_doc(report), separators=(",", ":"))


def report_from_text(text: str) -> WeekReport:
    return report_from_doc(json.loads(text))


def report_doc(report: WeekReport) -> dict:
    """A finished week as plain data; ``report_from_doc`` gives it back equal."""
    return {
        "iso_year": report.iso_year, "iso_week": report.iso_week, "zone": report.zone, "meetings": report.meetings,
        "hours": [report.meeting, report.focus, report.fragmented, report.after_hours, report.double_booked,
                  report.working],
        "back_to_back": [[_meeting_doc(m) for m in run] for run in report.back_to_back],
        "days": [[d.day.isoformat(), d.meeting_hours, d.meetings, d.working_hours] for d in report.days],
        "focus_blocks": [list(b) for b in report.focus_blocks],
        "left_out": dict(report.left_out), "seconds": dict(report.seconds),
    }


def report_from_doc(doc: dict) -> WeekReport:
    zone = ZoneInfo(doc["zone"])
    start, end = week_bounds(doc["iso_year"], doc["iso_week"], zone)
    return WeekReport(
        doc["iso_year"], doc["iso_week"], doc["zone"], start, end, doc["meetings"], *doc["hours"],
        back_to_back=[[_meeting_from_doc(m) for m in run] for run in doc["back_to_back"]],
        days=[DayLoad(date.fromisoformat(d[0]), d[1], d[2], d[3]) for d in doc["days"]],
        focus_blocks=[(b[0], b[1]) for b in doc["focus_blocks"]],
        left_out=dict(doc["left_out"]), seconds=dict(doc["seconds"]))


def _meeting_doc(meeting: Meeting) -> dict:
    return {"key": meeting.key, "start": meeting.start, "end": meeting.end, "subject": meeting.subject,
            "people": list(meeting.people), "is_private": meeting.is_private, "hidden": meeting.hidden}


def _meeting_from_doc(doc: dict) -> Meeting:
    return Meeting(doc["key"], doc["start"], doc["end"], doc["subject"], tuple(doc["people"]), doc["is_private"],
                   doc["hidden"])
