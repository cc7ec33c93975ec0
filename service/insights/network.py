"""A person's network over 28 days: the share of their meeting time by the styles of the people met (DISC,
Enneagram, 16 types, from the directory), inside and outside their organisation, and new and fading
collaborators (pure).

Each cleaned meeting (``week.clean``) gives its hours to the other people in it in equal parts, as top
collaborators do. A person whose visibility does not let the reader see their results counts as "unknown".
New: met in the last 28 days and not in the 28 before. Fading: met at least twice in the 28 days before and
not since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from service.insights.matching import Directory
from service.insights.org import Organization
from service.insights.people import frameworks, styles
from service.insights.week import clean

WINDOW = timedelta(days=28)
UNKNOWN = "unknown"
FADING_MEETINGS = 2


@dataclass
class Network:
    hours: float
    styles: dict[str, dict[str, float]]          # framework -> style code (or "unknown") -> share of hours
    internal: float                              # share of hours with people inside the organisation
    external: float
    new: list[dict] = field(default_factory=list)        # {email, name, meetings}
    fading: list[dict] = field(default_factory=list)     # {email, name, meetings (in the 28 days before)}

    def as_dict(self) -> dict:
        return {"hours": self.hours, "styles": self.styles, "internal": self.internal, "external": self.external,
                "new": self.new, "fading": self.fading}


def analyse(events: Iterable[dict], me: set[str], directory: Directory, organization: Organization | None,
            now: datetime, shown: Callable[[dict | None], bool] = lambda person: True) -> Network:
    """The network of the 28 days before ``now`` (``events``: usable meetings of the 56 days before it)."""
    now_s = int(now.astimezone(UTC).timestamp())
    start_s = now_s - int(WINDOW.total_seconds())
    before_s = start_s - int(WINDOW.total_seconds())
    by_style = {name: {} for name in frameworks()}
    inside = outside = total = 0.0
    recent: dict[str, list] = {}
    earlier: dict[str, list] = {}
    for meeting in clean(events, me):
        if meeting.start >= now_s or meeting.start < before_s or meeting.hidden:
            continue        # a hidden attendee list says nothing about who was met
        people = _people(meeting.people, directory)
        seen = recent if meeting.start >= start_s else earlier
        for key, email, person in people:
            entry = seen.setdefault(key, [email, (person or {}).get("name") or email, 0])
            entry[2] += 1
        if meeting.start < start_s:
            continue
        hours = (min(meeting.end, now_s) - meeting.start) / 3600
        share = hours / len(people)
        total += hours
        for _key, email, person in people:
            theirs = styles(person) if shown(person) else {}
            for name in by_style:
                code = theirs.get(name, UNKNOWN)
                by_style[name][code] = by_style[name].get(code, 0.0) + share
            if organization is None or organization.is_internal(email):
                inside += share
            else:
                outside += share
    shares = {name: {code: round(v / total, 3) for code, v in sorted(codes.items())} if total else {}
              for name, codes in by_style.items()}
    new = [_who(v) for k, v in recent.items() if k not in earlier]
    fading = [_who(v) for k, v in earlier.items() if k not in recent and v[2] >= FADING_MEETINGS]
    return Network(round(total, 2), shares, round(inside / total, 3) if total else 0.0,
                   round(outside / total, 3) if total else 0.0,
                   sorted(new, key=lambda w: (-w["meetings"], w["email"])),
                   sorted(fading, key=lambda w: (-w["meetings"], w["email"])))


def _people(emails: Iterable[str], directory: Directory) -> list[tuple[str, str, dict | None]]:
    """(key, address, directory entry) per person, one entry per person whatever the aliases."""
    found, keys = [], set()
    for email in emails:
        person = directory.person(email)
        key = person["_id"] if person else email
        if key not in keys:
            keys.add(key)
            found.append((key, (person or {}).get("primary_email") or email, person))
    return found


def _who(entry: list) -> dict:
    return {"email": entry[0], "name": entry[1], "meetings": entry[2]}
