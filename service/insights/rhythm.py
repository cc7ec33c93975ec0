"""The rhythm of 1:1s: for the people a person meets most (and their manager, when the directory names one), how
often they usually meet one to one, when they last did, and whether the next is overdue (pure).

A 1:1 is a meeting that counts for the week (``week.leave_out``) with exactly one other person. The usual
interval is the median gap between consecutive past 1:1s with that person (it needs two); a 1:1 is overdue when
the time since the last passes 1.5 times the usual interval, and then a tip chosen by the other person's styles
says why it matters to them.
"""

from __future__ import annotations

import json
import statistics
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from service.insights.collaborators import rank
from service.insights.matching import Directory, attendees_hidden
from service.insights.people import DATA_DIR, styles
from service.insights.tips import Tip
from service.insights.week import leave_out, others
from service.store import as_utc

OVERDUE_FACTOR = 1.5
TOP = 5
LOOKBACK_DAYS = 90
FRAMEWORK_ORDER = ("disc", "enneagram", "mbti16")


@cache
def time_tips() -> dict:
    return json.loads((DATA_DIR / "time_tips.json").read_text(encoding="utf-8"))


@dataclass
class Rhythm:
    email: str
    name: str
    person_id: str | None
    is_manager: bool
    one_on_ones: int                       # past 1:1s in the lookback
    usual_days: float | None               # median days between them (None: fewer than two)
    last: datetime | None
    next: datetime | None
    overdue: bool
    overdue_days: float                    # days past 1.5 times the usual interval (0 when not overdue)
    tip: Tip | None = None

    def as_dict(self) -> dict:
        return {"person": {"id": self.person_id, "name": self.name, "email": self.email},
                "is_manager": self.is_manager, "one_on_ones": self.one_on_ones, "usual_days": self.usual_days,
                "last": _iso(self.last), "next": _iso(self.next), "overdue": self.overdue,
                "overdue_days": self.overdue_days,
                "tip": {"text": self.tip.text, "framework": self.tip.framework, "style": self.tip.style}
                if self.tip else None}


def one_on_ones(events: Iterable[dict], me: set[str], directory: Directory) -> dict[str, list[datetime]]:
    """person key (directory id, else address) -> start times of the 1:1s with them, earliest first."""
    found: dict[str, list[datetime]] = {}
    for event in events:
        if leave_out(event, me) is not None or attendees_hidden(event, me):
            continue        # a hidden attendee list is no 1:1 (who was there is unknown)
        people = others(event, me)
        if len(people) != 1:
            continue
        person = directory.person(people[0])
        if person is not None and set(person.get("emails", [])) & me:
            continue
        key = person["_id"] if person else people[0]
        found.setdefault(key, []).append(as_utc(event["start"]))
    return {k: sorted(set(v)) for k, v in found.items()}


def rhythm_tip(person: dict | None, seed: str) -> Tip:
    """The tip for an overdue 1:1 with ``person``, by their styles (DISC first, then Enneagram, then 16 types)."""
    library = time_tips()["rhythm"]
    theirs = styles(person)
    for framework in FRAMEWORK_ORDER:
        code = theirs.get(framework)
        texts = library.get(framework, {})
        if not code:
            continue
        if framework == "mbti16" and len(code) == 4:
            options = [c for c in (code[0], code[2]) if c in texts]
            if options:
                pick = options[zlib.crc32(seed.encode()) % len(options)]
                return Tip(framework, code, texts[pick])
        elif code in texts:
            return Tip(framework, code, texts[code])
    return Tip("time", "rhythm", library["default"])


def rhythms(events: list[dict], me: set[str], directory: Directory, now: datetime,
            manager_email: str | None = None, top: int = TOP,
            shown: Callable[[dict | None], bool] = lambda person: True) -> list[Rhythm]:
    """The 1:1 rhythm with the ``top`` people met most before ``now`` and the manager; overdue ones first.
    ``shown(person)``: whether a tip about this person may be shown to the reader (visibility)."""
    now = now.astimezone(UTC)
    past = [e for e in events if as_utc(e["start"]) < now]
    meetings_1on1 = one_on_ones(events, me, directory)
    wanted: list[tuple[str, str, str | None, dict | None, bool]] = []
    manager = directory.person(manager_email) if manager_email else None
    manager_key = (manager["_id"] if manager else (manager_email or "").lower()) or None
    if manager_key:
        wanted.append((manager_key, (manager or {}).get("primary_email") or manager_email.lower(),
                       (manager or {}).get("name") or manager_email, manager, True))
    for collaborator in rank(past, me, directory, limit=top):
        key = collaborator.person_id or collaborator.email
        if key != manager_key:
            wanted.append((key, collaborator.email, collaborator.name, directory.person(collaborator.email), False))
    found = [_rhythm(meetings_1on1.get(key, []), now, email, name, person, is_manager, shown)
             for key, email, name, person, is_manager in wanted]
    return sorted(found, key=lambda r: (not r.overdue, -r.overdue_days, not r.is_manager, r.email))


def _rhythm(starts: list[datetime], now: datetime, email: str, name: str, person: dict | None, is_manager: bool,
            shown: Callable[[dict | None], bool]) -> Rhythm:
    past = [s for s in starts if s < now]
    future = [s for s in starts if s >= now]
    gaps = [(b - a) / timedelta(days=1) for a, b in zip(past, past[1:], strict=False)]
    usual = round(statistics.median(gaps), 2) if gaps else None
    last = past[-1] if past else None
    overdue_days = 0.0
    if usual and last is not None:
        overdue_days = max(0.0, round((now - last) / timedelta(days=1) - OVERDUE_FACTOR * usual, 2))
    overdue = bool(usual and last is not None and (now - last) > timedelta(days=OVERDUE_FACTOR * usual))
    tip = rhythm_tip(person, f"{email}:{last}") if overdue and shown(person) else None
    return Rhythm(email, name, person["_id"] if person else None, is_manager, len(past), usual, last,
                  future[0] if future else None, overdue, overdue_days if overdue else 0.0, tip)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None
