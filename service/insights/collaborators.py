"""Top collaborators: who a user meets most, weighted by meeting length and size.

Each meeting gives every other attendee ``hours / (others)``: an hour one-to-one counts for 1, an hour
with nine other people counts 0.11 for each. Cancelled, declined and all-day events count for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from pymongo.database import Database

from service.insights import meetings
from service.insights.matching import (
    Directory,
    attendee_emails,
    attendees_hidden,
    match_attendees,
    self_emails,
    user_response,
)
from service.store import as_utc, utcnow
from service.store.records import User

DEFAULT_DAYS = 30
MAX_DAYS = 365


@dataclass
class Collaborator:
    email: str
    name: str
    person_id: str | None
    score: float
    meetings: int
    minutes: int

    def as_dict(self) -> dict:
        return {**asdict(self), "score": round(self.score, 3)}


def counts(event: dict, me: set[str]) -> bool:
    """Whether a meeting counts as time spent with people (not with a hidden attendee list: who was there is
    unknown)."""
    return not (event.get("is_cancelled") or event.get("is_all_day") or user_response(event, me) == "declined"
                or attendees_hidden(event, me))


def rank(events: Iterable[dict], me: set[str], directory: Directory, limit: int = 10,
         max_people: int | None = None) -> list[Collaborator]:
    """Collaborators ordered by weighted time together (pure); with ``max_people``, meetings of more people
    than that (the user included) count for nothing either."""
    totals: dict[str, Collaborator] = {}
    for event in events:
        if not counts(event, me):
            continue
        others = match_attendees(event, me, directory)
        if not others or (max_people is not None and len(others) + 1 > max_people):
            continue
        minutes = max(0, int((as_utc(event["end"]) - as_utc(event["start"])).total_seconds() // 60))
        weight = minutes / 60 / len(others)
        for other in others:
            key = other.person["_id"] if other.person else other.email
            entry = totals.get(key)
            if entry is None:
                name = (other.person or {}).get("name") or other.name
                entry = totals[key] = Collaborator(other.email, name, key if other.person else None, 0.0, 0, 0)
                if other.person:
                    entry.email = other.person.get("primary_email", other.email)
            entry.score += weight
            entry.meetings += 1
            entry.minutes += minutes
    ordered = sorted(totals.values(), key=lambda c: (-c.score, -c.meetings, c.email))
    return ordered[:limit]


def top_collaborators(
    db: Database, user: User, days: int = DEFAULT_DAYS, limit: int = 10, now: datetime | None = None
) -> list[Collaborator]:
    """The user's top collaborators over the last ``days`` days, from stored events."""
    now = (now or utcnow()).astimezone(UTC)
    days = max(1, min(int(days), MAX_DAYS))
    events = meetings.in_window(db, user.id, now - timedelta(days=days), now)
    directory = Directory.for_emails(db, attendee_emails(events) | {user.email})
    return rank(events, self_emails(user, directory), directory, limit)
