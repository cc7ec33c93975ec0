"""Recurring-meeting hygiene for the series a person organises, and their share of time in recurring meetings
(pure).

For each series: whether it has no end in sight, more than 8 attendees, occurrences longer than 60 minutes, and
what it costs in attendee-hours a month, each with a suggestion (add an end date, make people optional,
shorten). "No end date" is the master's ``recurrence.range`` (``noEnd``), which the sync's series check records
(``store.series``); for a series not checked yet it is read from the occurrences: one still meeting in the last
week of the synced window has no end in sight.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from service.insights.rhythm import time_tips
from service.insights.week import clean, leave_out, others
from service.store import as_utc

MAX_ATTENDEES = 8
MAX_MINUTES = 60
DAYS_A_MONTH = 30.44
END_IN_SIGHT = timedelta(days=7)


@dataclass
class Series:
    series_id: str
    subject: str
    occurrences: int
    attendees: int                 # people in it, the organiser included (the largest occurrence)
    minutes: int                   # the usual length
    interval_days: float | None    # the usual gap between occurrences
    attendee_hours_a_month: float
    no_end_date: bool
    suggestions: list[dict] = field(default_factory=list)   # {problem, text}

    def as_dict(self) -> dict:
        return {"series_id": self.series_id, "subject": self.subject, "occurrences": self.occurrences,
                "attendees": self.attendees, "minutes": self.minutes, "interval_days": self.interval_days,
                "attendee_hours_a_month": self.attendee_hours_a_month, "no_end_date": self.no_end_date,
                "suggestions": self.suggestions}


@dataclass
class Hygiene:
    series: list[Series]
    recurring_share: float         # of the person's meeting time (past 28 days) spent in recurring meetings

    def as_dict(self) -> dict:
        return {"recurring_share": self.recurring_share, "series": [s.as_dict() for s in self.series]}


def organised_by(event: dict, me: set[str]) -> bool:
    return ((event.get("organizer") or {}).get("email") or "").strip().lower() in me


def review(events: Iterable[dict], me: set[str], now: datetime, horizon: datetime,
           window: timedelta = timedelta(days=28), ranges: dict[str, dict] | None = None) -> Hygiene:
    """Hygiene of the series ``me`` organises among ``events`` (usable meetings around ``now``; ``horizon``: the
    end of the synced window; ``ranges``: master id -> ``{range_type, end_date}`` where known)."""
    events = list(events)
    grouped: dict[str, list[dict]] = {}
    for event in events:
        master = event.get("series_master_id")
        if master and organised_by(event, me) and leave_out(event, me) in (None, "declined"):
            grouped.setdefault(master, []).append(event)
    found = [_series(master, occurrences, me, horizon, (ranges or {}).get(master))
             for master, occurrences in grouped.items()]
    found.sort(key=lambda s: (-len(s.suggestions), -s.attendee_hours_a_month, s.subject, s.series_id))
    return Hygiene(found, _recurring_share(events, me, now, window))


def _series(master: str, occurrences: list[dict], me: set[str], horizon: datetime, known: dict | None) -> Series:
    occurrences.sort(key=lambda e: as_utc(e["start"]))
    starts = [as_utc(e["start"]) for e in occurrences]
    minutes = int(statistics.median((as_utc(e["end"]) - as_utc(e["start"])) / timedelta(minutes=1)
                                    for e in occurrences))
    people = max(len(others(e, me)) for e in occurrences) + 1
    gaps = [(b - a) / timedelta(days=1) for a, b in zip(starts, starts[1:], strict=False) if b > a]
    interval = round(statistics.median(gaps), 2) if gaps else None
    a_month = DAYS_A_MONTH / interval if interval else 1.0
    cost = round(people * minutes / 60 * a_month, 1)
    no_end = known["range_type"] == "noEnd" if known else starts[-1] >= horizon - END_IN_SIGHT
    texts = time_tips()["hygiene"]
    suggestions = []
    if no_end:
        suggestions.append({"problem": "no_end_date", "text": texts["no_end_date"]})
    if people > MAX_ATTENDEES:
        suggestions.append({"problem": "too_many_attendees", "text": texts["too_many_attendees"]})
    if minutes > MAX_MINUTES:
        suggestions.append({"problem": "too_long", "text": texts["too_long"]})
    named = clean([occurrences[0]], me)
    subject = named[0].subject if named else "(series)"
    return Series(master, subject, len(occurrences), people, minutes, interval, cost, no_end, suggestions)


def _recurring_share(events: list[dict], me: set[str], now: datetime, window: timedelta) -> float:
    """Share of meeting time in the ``window`` before ``now`` spent in occurrences of a series."""
    now = now.astimezone(UTC)
    start = now - window
    recurring = {e.get("ical_uid") or e.get("graph_id") for e in events if e.get("series_master_id")}
    total = part = 0
    for meeting in clean(events, me):
        seconds = max(0, min(meeting.end, int(now.timestamp())) - max(meeting.start, int(start.timestamp())))
        total += seconds
        if meeting.key in recurring:
            part += seconds
    return round(part / total, 3) if total else 0.0
