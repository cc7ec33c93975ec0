"""Coaching suggestions for one local day: up to five people to prepare for, each with why, a tip and the
framework it comes from.

Ranked: the people in the day's meetings first (by the time of the first meeting with them), then the people
met most over the 14 days before (collaborator weights). Both leave out all-day, cancelled and declined
meetings, meetings with nobody else and meetings of more than 25 people. Only people in the directory with a
style a tips file covers can be suggested. A tip shown to the user on one of the 14 days before is not
shown again while another tip for that person remains; asking again for the same day gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pymongo.database import Database

from service.insights import days, meetings
from service.insights.collaborators import counts, rank
from service.insights.matching import Directory, attendee_emails, match_attendees, self_emails
from service.insights.people import styles
from service.insights.tips import Tip, candidates
from service.store import as_utc
from service.store import coaching as coaching_store
from service.store.records import User

LIMIT = 5
LOOKBACK_DAYS = 14
NO_REPEAT_DAYS = 14
MAX_PEOPLE = 25
TODAY = "meeting_today"
MET_OFTEN = "met_often"


@dataclass
class Suggestion:
    name: str
    email: str
    person_id: str
    reason: str                  # meeting_today | met_often
    why: str                     # "meeting them today at 10:00", "met 6 times in the last 14 days"
    tip: Tip
    at: datetime | None = None   # the first meeting with them that day (local), for meeting_today
    meetings: int = 0            # meetings together in the last 14 days, for met_often

    def as_dict(self) -> dict:
        return {"person": {"id": self.person_id, "name": self.name, "email": self.email},
                "reason": self.reason, "why": self.why, "tip": self.tip.text, "framework": self.tip.framework,
                "style": self.tip.style, "at": self.at.isoformat() if self.at else None, "meetings": self.meetings}


def _small(others: list) -> bool:
    return 0 < len(others) and len(others) + 1 <= MAX_PEOPLE


def _today(events: list[dict], me: set[str], directory: Directory, zone, start: datetime, end: datetime):
    """(person, first meeting start, local) for the matched people in the day's meetings, earliest first."""
    found: dict[str, tuple[dict, datetime]] = {}
    for event in sorted(events, key=lambda e: as_utc(e["start"])):
        begins = as_utc(event["start"])
        if not (start <= begins < end) or not counts(event, me):
            continue
        others = match_attendees(event, me, directory)
        if not _small(others):
            continue
        for other in others:
            if other.person is not None and other.person["_id"] not in found:
                found[other.person["_id"]] = (other.person, begins.astimezone(zone))
    return list(found.values())


def _history(db: Database, user_id: str, day: date) -> dict[str, str]:
    """tip key → the latest day (ISO) in the 14 days before ``day`` it was shown."""
    last: dict[str, str] = {}
    shown = coaching_store.shown_between(db, user_id, day - timedelta(days=NO_REPEAT_DAYS), day - timedelta(days=1))
    for shown_on in sorted(shown):
        for key in shown[shown_on]:
            last[key] = shown_on
    return last


def _choose(options: list[Tip], recent: dict[str, str], used: set[str]) -> Tip | None:
    """The first tip not shown lately; when every one was, the one shown longest ago."""
    open_options = [t for t in options if t.key not in used]
    fresh = [t for t in open_options if t.key not in recent]
    if fresh:
        return fresh[0]
    return min(open_options, key=lambda t: recent[t.key], default=None)


def suggest(db: Database, user: User, day: date, now: datetime | None = None, limit: int = LIMIT,
            record: bool = True) -> list[Suggestion]:
    """Up to ``limit`` suggestions for the user's local ``day``; with ``record`` the tips count as shown."""
    zone = days.user_zone(user)
    start, end = (edge.astimezone(UTC) for edge in days.day_bounds(zone, day))
    since = start - timedelta(days=LOOKBACK_DAYS)
    events = meetings.in_window(db, user.id, since, end)
    directory = Directory.for_emails(db, attendee_emails(events) | {user.email})
    me = self_emails(user, directory)
    my_styles = styles(directory.person(user.email))
    earlier = [e for e in events if as_utc(e["start"]) < start]
    people: list[tuple[dict, str, str, datetime | None, int]] = [
        (person, TODAY, f"meeting them today at {at:%H:%M}", at, 0)
        for person, at in _today(events, me, directory, zone, start, end)]
    for collaborator in rank(earlier, me, directory, limit=50, max_people=MAX_PEOPLE):
        person = directory.person(collaborator.email) if collaborator.person_id else None
        if person is not None:
            times = "once" if collaborator.meetings == 1 else f"{collaborator.meetings} times"
            people.append((person, MET_OFTEN, f"met {times} in the last {LOOKBACK_DAYS} days", None,
                           collaborator.meetings))
    recent, used, chosen, seen = _history(db, user.id, day), set(), [], set()
    for person, reason, why, at, met in people:
        if person["_id"] in seen:
            continue
        tip = _choose(candidates(person, my_styles, f"{day.isoformat()}:{person['_id']}"), recent, used)
        if tip is None:
            continue
        seen.add(person["_id"])
        used.add(tip.key)
        chosen.append(Suggestion(person.get("name") or person.get("primary_email") or "",
                                 person.get("primary_email") or "", person["_id"], reason, why, tip, at, met))
        if len(chosen) == limit:
            break
    if record:
        coaching_store.record(db, user.id, day, [s.tip.key for s in chosen])
    return chosen
