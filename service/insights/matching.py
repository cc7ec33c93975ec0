"""Attendees to people: case-insensitive email match over primary addresses and aliases.

Rooms and other resources are dropped, and so is the user themself (under any of their addresses).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pymongo.database import Database

from service.store import people as people_store
from service.store.records import User

RESOURCE_TYPES = {"resource", "room", "equipment"}
UNANSWERED = {"none", "notresponded"}


@dataclass(frozen=True)
class Match:
    email: str
    name: str
    person: dict | None          # the directory entry, or None when nobody matches
    type: str = "required"
    response: str | None = None


class Directory:
    """An in-memory email → person index for one batch of lookups."""

    def __init__(self, people: Iterable[dict] = ()):
        self._by_email: dict[str, dict] = {}
        for person in people:
            for email in person.get("emails", []):
                self._by_email[email.lower()] = person

    @classmethod
    def for_emails(cls, db: Database, emails: Iterable[str]) -> Directory:
        return cls(people_store.by_emails(db, emails))

    def person(self, email: str | None) -> dict | None:
        return self._by_email.get(email.strip().lower()) if email else None

    def __len__(self) -> int:
        return len(self._by_email)

    def people(self) -> list[dict]:
        """Each person once."""
        return list({person["_id"]: person for person in self._by_email.values()}.values())


def self_emails(user: User, directory: Directory) -> set[str]:
    """Every address that means "the user": their account email plus their directory aliases."""
    email = user.email.lower()
    me = directory.person(email)
    return {email, *(me.get("emails", []) if me else [])} - {""}


def attendee_emails(events: Iterable[dict]) -> set[str]:
    """Every attendee and organizer address in ``events`` (for one directory query)."""
    found = set()
    for event in events:
        for attendee in event.get("attendees") or []:
            if attendee.get("email"):
                found.add(attendee["email"].lower())
        organizer = (event.get("organizer") or {}).get("email")
        if organizer:
            found.add(organizer.lower())
    return found


HIDDEN_NOTE = "attendee list hidden by the organizer"


def attendees_hidden(event: dict, me: set[str]) -> bool:
    """The organizer hid the attendee list ("each attendee only sees themselves in the meeting request",
    ``hideAttendees``) and the user is not the organizer: the stored list is not who is there. Such a meeting
    counts for no collaborator, is no one-to-one and gets no tip about people calsync cannot see (the organizer
    stays visible)."""
    organizer = ((event.get("organizer") or {}).get("email") or "").strip().lower()
    return event.get("hide_attendees") is True and organizer not in me


def is_resource(attendee: dict) -> bool:
    return (attendee.get("type") or "").lower() in RESOURCE_TYPES


def match_attendees(event: dict, me: set[str], directory: Directory) -> list[Match]:
    """The other people in a meeting (organizer first if not listed), each with their directory entry; of a
    meeting whose attendee list is hidden from the user, only the organizer."""
    matches: list[Match] = []
    seen: set[str] = set()
    organizer = event.get("organizer") or {}
    candidates = [] if attendees_hidden(event, me) else list(event.get("attendees") or [])
    if organizer.get("email"):
        candidates.insert(0, {**organizer, "type": "organizer", "response": "organizer"})
    for attendee in candidates:
        email = (attendee.get("email") or "").strip().lower()
        if not email or email in me or email in seen or is_resource(attendee):
            continue
        person = directory.person(email)
        if person is not None and set(person.get("emails", [])) & me:
            continue  # another alias of the user
        seen.add(email)
        if person is not None:
            seen.update(person.get("emails", []))
        name = (person or {}).get("name") or attendee.get("name") or email  # the directory name is curated
        matches.append(Match(email, name, person, attendee.get("type") or "required", attendee.get("response")))
    return _dedupe_people(matches)


def _dedupe_people(matches: list[Match]) -> list[Match]:
    """One entry per person even when they appear under two aliases."""
    result, ids = [], set()
    for match in matches:
        key = match.person["_id"] if match.person else None
        if key is not None and key in ids:
            continue
        ids.add(key)
        result.append(match)
    return result


def user_response(event: dict, me: set[str]) -> str | None:
    """The user's own response to a meeting (declined, accepted…), from the event or their attendee entry."""
    for key in ("response", "response_status"):
        value = event.get(key)
        if isinstance(value, dict):
            value = value.get("response")
        if value and str(value).lower() not in UNANSWERED:   # "none" says nothing: look at the attendee entry
            return str(value).lower()
    for attendee in event.get("attendees") or []:
        if (attendee.get("email") or "").lower() in me and attendee.get("response"):
            return str(attendee["response"]).lower()
    return None


def has_own_name(match: Match) -> bool:
    """Whether an attendee has a real name, not just their address or a one-word mailbox name made from it
    ("External" for external@fabrikam.com, "Info" for info@…): the directory's, or one their mail system gave
    them ("New Person" for new.person@… is a name)."""
    if match.person is not None:
        return True
    name = (match.name or "").strip().casefold()
    local = match.email.split("@", 1)[0].casefold()
    return bool(name) and name != match.email.casefold() and not (name == local and not re.search(r"[\s._-]", local))
