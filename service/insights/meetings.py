"""The meetings insights may use: stored events less what the user excluded, each meeting counted once, and
a private meeting's subject never shown.

Digests, prep mails, the meeting dashboard, top collaborators and the API all read meetings through here.
The same meeting can be stored more than once, one copy per calendar it appears in (the user's own and a
colleague's shared one, say); Graph gives every copy the same ``iCalUId`` ("a unique identifier for an
event across calendars"), and each occurrence of a series its own, so a meeting is (``iCalUId``, start).
Of the copies the one with the smallest Graph id stands for the meeting, so every reader picks the same.
A meeting is excluded when any of its copies is.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pymongo.database import Database

from service.store import as_utc, exclusions
from service.store import events as events_store
from service.store.exclusions import Excluded

PRIVATE_SUBJECT = "Private meeting"
NO_SUBJECT = "(no subject)"


def is_private(event: dict) -> bool:
    return event.get("sensitivity") in events_store.PRIVATE


def subject_of(event: dict) -> str:
    """What to call a meeting wherever a subject would appear."""
    if is_private(event):
        return PRIVATE_SUBJECT
    return (event.get("subject") or NO_SUBJECT).strip()[:200] or NO_SUBJECT


def meeting_key(event: dict) -> tuple:
    ical_uid = event.get("ical_uid")
    if not ical_uid:
        return ("event", event.get("graph_id"))
    start = event.get("start")
    return ("ical", ical_uid, as_utc(start) if isinstance(start, datetime) else start)


def usable(events: Iterable[dict], excluded: Excluded) -> list[dict]:
    """One copy of each meeting none of whose copies is excluded, in the order the meetings first appear."""
    groups: dict[tuple, list[dict]] = {}
    for event in events:
        groups.setdefault(meeting_key(event), []).append(event)
    return [min(copies, key=lambda e: e.get("graph_id") or "") for copies in groups.values()
            if not (excluded and any(excluded.covers(c) for c in copies))]


def in_window(db: Database, user_id: str, start: datetime, end: datetime) -> list[dict]:
    """The user's usable meetings overlapping [start, end), earliest first."""
    return usable(events_store.in_window(db, user_id, start, end), exclusions.for_user(db, user_id))


def page(db: Database, user_id: str, start: datetime, end: datetime, after: tuple[datetime, str] | None,
         limit: int) -> tuple[list[dict], tuple[datetime, str] | None]:
    """Up to ``limit`` usable meetings by (start, Graph id) after the key ``after``, and the key to go on from
    (None when nothing is left). Whether a copy stands for its meeting depends on copies outside the page too,
    so each batch looks up the siblings of the iCalUIds it holds."""
    excluded = exclusions.for_user(db, user_id)
    found: list[dict] = []
    while True:
        raw = events_store.page_in_window(db, user_id, start, end, after, limit + 1)
        siblings = events_store.by_ical_uids(db, user_id, {e["ical_uid"] for e in raw if e.get("ical_uid")})
        seen = {e["graph_id"] for e in raw}
        kept = {e["graph_id"] for e in usable(raw + [s for s in siblings if s["graph_id"] not in seen], excluded)}
        for event in raw:
            if event["graph_id"] in kept:
                if len(found) == limit:
                    return found, _key(found[-1])
                found.append(event)
            after = _key(event)
        if len(raw) <= limit:
            return found, None


def _key(event: dict) -> tuple[datetime, str]:
    return as_utc(event["start"]), event["graph_id"]
