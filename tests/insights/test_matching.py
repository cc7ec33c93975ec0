from __future__ import annotations

from datetime import UTC, datetime

from service.insights.matching import Directory, match_attendees, self_emails, user_response
from service.store.records import User
from tests.support.factories import PEOPLE, add_people, attendee

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _event(attendees, organizer=None):
    return {"graph_id": "e1", "start": T0, "end": T0, "attendees": attendees,
            "organizer": organizer or {"name": "Morgan", "email": "me@example.com"}}


def _directory(db):
    add_people(db)
    return Directory.for_emails(db, [e for p in PEOPLE for e in [p["email"], *p.get("aliases", [])]])


def test_attendees_match_case_insensitively_and_through_aliases(db):
    directory = _directory(db)
    me = self_emails(User(id="me", email="me@example.com"), directory)
    event = _event([attendee("ANA.Alias@Example.ORG", "Ana A"), {"name": "Ben", "email": "Ben@Example.COM",
                                                                   "type": "optional", "response": "tentative"}])

    matches = match_attendees(event, me, directory)

    assert [(m.email, m.person["name"]) for m in matches] == [("ana.alias@example.org", "Ana"),
                                                              ("ben@example.com", "Ben")]
    assert matches[1].type == "optional"


def test_matched_attendees_go_by_their_directory_name_and_unmatched_by_their_calendar_name(db):
    directory = _directory(db)
    me = self_emails(User(id="me", email="me@example.com"), directory)
    event = _event([attendee("ana.alias@example.org", "ana.alias"), attendee("zed@elsewhere.example", "Zed Q")])

    matches = match_attendees(event, me, directory)

    assert [m.name for m in matches] == ["Ana", "Zed Q"]


def test_rooms_and_the_user_under_any_alias_are_ignored_and_unmatched_are_kept(db):
    directory = _directory(db)
    me = self_emails(User(id="me", email="me@example.com"), directory)
    event = _event([
        attendee("me@example.com"),
        attendee("Morgan@OLD.example.com"),
        attendee("room-4@example.com", "Room 4", type_="resource"),
        attendee("stranger@partner.example", "Sam Stranger"),
    ])

    matches = match_attendees(event, me, directory)

    assert me == {"me@example.com", "morgan@old.example.com"}
    assert [(m.email, m.person) for m in matches] == [("stranger@partner.example", None)]


def test_one_person_listed_under_two_aliases_appears_once_and_organizer_counts(db):
    directory = _directory(db)
    me = self_emails(User(id="me", email="me@example.com"), directory)
    event = _event([attendee("ana@example.com"), attendee("ana.alias@example.org")],
                   organizer={"name": "Cy", "email": "CY@example.com"})

    matches = match_attendees(event, me, directory)

    assert [m.email for m in matches] == ["cy@example.com", "ana@example.com"]


def test_user_response_comes_from_their_attendee_entry():
    me = {"me@example.com"}

    assert user_response(_event([attendee("me@example.com", response="declined")]), me) == "declined"
    assert user_response(_event([attendee("x@example.com", response="declined")]), me) is None
    assert user_response({**_event([]), "response": "Declined"}, me) == "declined"
