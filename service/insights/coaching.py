"""Coaching suggestions for one local day: up to five people to prepare for, each with why, a tip and the
framework it comes from.

Ranked: the people in the day's meetings first (by the time of the first meeting with them), then the people
met most over the 14 days before (collaborator weights). Both leave out all-day, cancelled and declined
meetings, meetings with nobody else and meetings of more than 25 people. Only people in the directory with a
style a tips file covers can be suggested. A tip shown to the user on one of the 14 days before is not
shown again while another tip for that person remains; asking again for the same day gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pymongo.database import Database

from service.insights import days, meetings, org, rhythm, visibility
from service.insights.collaborators import counts, rank
from service.insights.matching import Directory, attendee_emails, match_attendees, self_emails
from service.insights.people import style_label, styles
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
OVERDUE = "one_on_one_overdue"     # a 1:1 past 1.5 times its usual interval (the rhythm of 1:1s)


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
    labels: list[str] = field(default_factory=list)   # their styles in words ("DISC I (Influence)")

    def as_dict(self) -> dict:
        return {"person": {"id": self.person_id, "name": self.name, "email": self.email},
                "reason": self.reason, "why": self.why, "tip": self.tip.text, "framework": self.tip.framework,
                "style": self.tip.style, "meetings": self.meetings,
                "at": self.at.astimezone(UTC).isoformat().replace("+00:00", "Z") if self.at else None}


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


def _choose(options: list[Tip], recent: dict[str, str], used: set[str], verdicts: dict[str, str] | None = None,
            fresh_only: bool = False) -> Tip | None:
    """The first tip neither shown lately nor marked not useful; else (unless ``fresh_only``) the one shown
    longest ago. A tip the user marked not useful is never chosen."""
    verdicts = verdicts or {}
    open_options = [t for t in options if t.key not in used and verdicts.get(t.key) != coaching_store.NOT_USEFUL]
    fresh = [t for t in open_options if t.key not in recent]
    if fresh:
        return fresh[0]
    if fresh_only:
        return None
    return min(open_options, key=lambda t: recent[t.key], default=None)


class TipChooser:
    """Tips for one user's local day: per person the freshest (none shown on the 14 days before), never one the
    user marked not useful, and no tip twice in the day's set; ``shown`` is what to record."""

    def __init__(self, db: Database, user: User, day: date, my_styles: dict[str, str]):
        self.day, self.my_styles = day, my_styles
        self.recent = _history(db, user.id, day)
        self.verdicts = coaching_store.feedback(db, user.id)
        self.shown: list[str] = []

    def choose(self, person: dict | None, limit: int = 1) -> list[Tip]:
        """Up to ``limit`` tips for ``person``: the first may be an older one when nothing fresh is left, the
        others only fresh ones (no padding with repeats)."""
        if not person:
            return []
        options = candidates(person, self.my_styles, f"{self.day.isoformat()}:{person['_id']}")
        picked: list[Tip] = []
        while len(picked) < limit:
            tip = _choose(options, self.recent, set(self.shown), self.verdicts, fresh_only=bool(picked))
            if tip is None:
                break
            picked.append(tip)
            self.shown.append(tip.key)
        return picked


def suggest(db: Database, user: User, day: date, now: datetime | None = None, limit: int = LIMIT,
            record: bool = True, chooser: TipChooser | None = None, skip: set[str] | None = None) -> list[Suggestion]:
    """Up to ``limit`` suggestions for the user's local ``day``; with ``record`` the tips count as shown.
    ``chooser`` shares the day's tips with a digest being built; ``skip`` leaves out people (ids) it covers."""
    zone = days.user_zone(user)
    start, end = (edge.astimezone(UTC) for edge in days.day_bounds(zone, day))
    since = start - timedelta(days=LOOKBACK_DAYS)
    events = meetings.in_window(db, user.id, since, end)
    directory = visibility.redact(Directory.for_emails(db, attendee_emails(events) | {user.email}), user,
                                  org.for_user(db, user))
    me = self_emails(user, directory)
    chooser = chooser or TipChooser(db, user, day, styles(directory.person(user.email)))
    earlier = [e for e in events if as_utc(e["start"]) < start]
    people: list[tuple[dict, str, str, datetime | None, int]] = [
        (person, TODAY, f"meeting them today at {at:%H:%M}", at, 0)
        for person, at in _today(events, me, directory, zone, start, end)]
    people += _overdue(db, user, directory, me, start)
    for collaborator in rank(earlier, me, directory, limit=50, max_people=MAX_PEOPLE):
        person = directory.person(collaborator.email) if collaborator.person_id else None
        if person is not None:
            times = "once" if collaborator.meetings == 1 else f"{collaborator.meetings} times"
            people.append((person, MET_OFTEN, f"met {times} in the last {LOOKBACK_DAYS} days", None,
                           collaborator.meetings))
    chosen, seen = [], set(skip or ())
    for person, reason, why, at, met in people:
        if person["_id"] in seen:
            continue
        tips = [rhythm.rhythm_tip(person, f"{day}:{person['_id']}")] if reason == OVERDUE else chooser.choose(person)
        if not tips:
            continue
        seen.add(person["_id"])
        chosen.append(Suggestion(person.get("name") or person.get("primary_email") or "",
                                 person.get("primary_email") or "", person["_id"], reason, why, tips[0], at, met,
                                 [style_label(f, c) for f, c in styles(person).items()]))
        if len(chosen) == limit:
            break
    if record:
        coaching_store.record(db, user.id, day, [s.tip.key for s in chosen])
    return chosen


def _overdue(db: Database, user: User, directory: Directory, me: set[str], start: datetime) -> list[tuple]:
    """People whose 1:1 with the user is overdue at the start of the day, longest overdue first."""
    events = meetings.in_window(db, user.id, start - timedelta(days=rhythm.LOOKBACK_DAYS), start)
    wider = Directory([*directory.people(), *visibility.redact(
        Directory.for_emails(db, attendee_emails(events)), user, org.for_user(db, user)).people()])
    found = []
    for late in rhythm.rhythms(events, me, wider, start):
        person = wider.person(late.email)
        if late.overdue and person is not None and styles(person):
            weeks = round(late.overdue_days / 7)
            gap = f"{weeks} weeks" if weeks > 1 else "a week" if weeks else "a few days"
            found.append((person, OVERDUE, f"your 1:1 is {gap} overdue (usually every {late.usual_days:g} days)",
                          None, late.one_on_ones))
    return found
