"""Who may see a person's assessment results is decided in one place, and the dashboard shows what it allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.insights import dashboard, visibility
from service.insights.visibility import Visibility
from service.store import users
from tests.support.factories import add_event, add_people, add_user, attendee


def _meeting(db):
    user = add_user(db)
    add_people(db)
    start = datetime(2026, 7, 1, 9, tzinfo=UTC)
    return users.get(db, user.id), add_event(db, user.id, "g-1", start, start + timedelta(hours=1),
                                             attendees=[attendee("ana@example.com"), attendee("ben@example.com")])


def test_today_everyone_in_the_organisation_sees_everyones_results_and_the_dashboard_says_so(db):
    user, event = _meeting(db)

    found = dashboard.build_dashboard(db, event, None, user)

    assert visibility.visibility(user, {"_id": "p"}) == visibility.EVERYONE_IN_ORGANISATION
    assert found.notice == "The assessment results shown here are visible to everyone in your organisation."
    assert [r.you for r in found.people] == [True, False, False] and found.people[0].tips == []
    assert all(r.labels and r.tips for r in found.people[1:])


def test_a_persons_choice_made_in_the_one_function_changes_what_the_dashboard_shows(db, monkeypatch):
    user, event = _meeting(db)
    private = Visibility(visibility.PRIVATE, "only Ana and her coach", False)
    chosen = {"ana@example.com": private}
    monkeypatch.setattr(dashboard, "visibility",
                        lambda viewer, person, organization=None: chosen.get((person or {}).get("primary_email"),
                                                                             visibility.EVERYONE_IN_ORGANISATION))

    found = dashboard.build_dashboard(db, event, None, user)

    ana = next(r for r in found.people if r.match.email == "ana@example.com")
    assert (ana.labels, ana.tips, ana.status) == ([], [], "not shared with you")
    assert sum(found.mixes[0].counts.values()) == 2                   # Ana's style is not counted either
    assert visibility.notice([private, visibility.EVERYONE_IN_ORGANISATION]) == (
        "The assessment results shown here are visible to everyone in your organisation.")
    assert visibility.notice([Visibility("restricted", "your team", True), visibility.EVERYONE_IN_ORGANISATION]) \
        .startswith("The assessment results shown here are visible to: everyone in your organisation; your team")
