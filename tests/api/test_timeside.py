"""The time side in the API: week, rhythm, network, working hours and a person's say; bad input is a 400 naming
the field, with nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from service.store import people as people_store
from service.store import workhours as workhours_store
from tests.support.factories import add_event, attendee

PARIS = ZoneInfo("Europe/Paris")
ROUTES = [("GET", "/api/users/me@example.com/insights/week"), ("GET", "/api/users/me@example.com/insights/rhythm"),
          ("GET", "/api/users/me@example.com/insights/network"), ("GET", "/api/users/me@example.com/working-hours"),
          ("PUT", "/api/users/me@example.com/working-hours"), ("GET", "/api/people/ana@example.com/visibility"),
          ("PUT", "/api/people/ana@example.com/visibility")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_the_routes_need_the_bearer_token(client, me, method, path):
    assert client.open(path, method=method, json={}).status_code == 401


def test_a_week_in_the_persons_zone_with_its_measures(client, ops_headers, db, me):
    monday = datetime(2026, 3, 2, 9, tzinfo=PARIS)
    for n, hour in enumerate((9, 10, 11)):
        start = monday.replace(hour=hour)
        add_event(db, me.id, f"g{n}", start, start + timedelta(minutes=55), attendees=[attendee("ana@example.com")])
    add_event(db, me.id, "declined", monday.replace(hour=14), monday.replace(hour=15),
              attendees=[attendee("ana@example.com"), attendee("me@example.com", response="declined")])

    body = client.get("/api/users/me@example.com/insights/week?week=2026-W10", headers=ops_headers).get_json()

    assert body["week"] == "2026-W10" and body["time_zone"] == "Europe/Paris"
    assert body["start"] == "2026-03-02T00:00:00+01:00"
    assert body["hours"]["meeting"] == 2.75 and body["hours"]["working"] == 40
    assert body["back_to_back"][0]["meetings"] == 3
    assert body["left_out"] == {"declined": 1}
    assert body["working_hours"]["source"] == "default"


def test_without_a_week_it_is_this_week_in_the_persons_zone(client, ops_headers, me):
    # Sunday 8 March 23:30 UTC is already Monday 9 March in Paris: ISO week 11 there.
    with time_machine.travel(datetime(2026, 3, 8, 23, 30, tzinfo=UTC), tick=False):
        body = client.get("/api/users/me@example.com/insights/week", headers=ops_headers).get_json()

    assert body["week"] == "2026-W11"


@pytest.mark.parametrize("raw", ["2026-W54", "1899-W01", "nonsense", "2026-W0"])
def test_a_week_that_does_not_exist_is_a_400_naming_week(client, ops_headers, me, raw):
    response = client.get(f"/api/users/me@example.com/insights/week?week={raw}", headers=ops_headers)

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["parameter"] == "week"


def test_rhythm_lists_the_overdue_one_to_one_first(client, ops_headers, db, me):
    now = datetime(2026, 6, 15, 12, tzinfo=UTC)
    for n in range(5):
        start = now - timedelta(days=21 + 7 * n)
        add_event(db, me.id, f"o{n}", start, start + timedelta(minutes=30), attendees=[attendee("ana@example.com")])

    with time_machine.travel(now, tick=False):
        body = client.get("/api/users/me@example.com/insights/rhythm", headers=ops_headers).get_json()

    first = body["people"][0]
    assert first["person"]["email"] == "ana@example.com" and first["overdue"] and first["usual_days"] == 7
    assert first["tip"]["text"]


def test_working_hours_are_set_and_read_back(client, ops_headers, db, me):
    response = client.put("/api/users/me@example.com/working-hours", headers=ops_headers,
                          json={"start": "08:30", "end": "16:30", "days": [0, 1, 2, 3]})

    assert response.status_code == 200
    assert workhours_store.get(db, me.id) == {"start": "08:30", "end": "16:30", "days": [0, 1, 2, 3],
                                              "source": "settings"}
    assert client.get("/api/users/me@example.com/working-hours", headers=ops_headers).get_json()["end"] == "16:30"


@pytest.mark.parametrize(("body", "field"), [
    ({"start": "17:00", "end": "09:00", "days": [0]}, "/end"),
    ({"start": "09:00", "end": "09:00", "days": [0]}, "/end"),
    ({"start": "25:00", "end": "26:00", "days": [0]}, "/start"),
    ({"start": "09:00", "end": "17:00", "days": []}, "/days"),
    ({"start": "09:00", "end": "17:00", "days": [7]}, "/days"),
    ({"start": "09:00", "end": "17:00", "days": [True]}, "/days"),
    ({"start": "09:00", "end": "17:00", "days": [0], "zone": "x"}, "/zone"),
    ({"start": "09:00", "end": "17:00", "days": [0], "time_zone": "Mars/Olympus_Mons"}, "/time_zone"),
    ({"start": "09:00", "end": "17:00", "days": [0], "time_zone": 5}, "/time_zone"),
])
def test_bad_working_hours_are_a_400_naming_the_field_and_nothing_is_stored(client, ops_headers, db, me, body, field):
    response = client.put("/api/users/me@example.com/working-hours", headers=ops_headers, json=body)

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["pointer"] == field
    assert workhours_store.get(db, me.id) is None


def test_working_hours_may_be_kept_in_another_zone(client, ops_headers, db, me):
    response = client.put("/api/users/me@example.com/working-hours", headers=ops_headers,
                          json={"start": "09:00", "end": "17:00", "days": [0], "time_zone": "America/New_York"})

    assert response.status_code == 200 and workhours_store.get(db, me.id)["time_zone"] == "America/New_York"


def test_a_person_restricts_who_sees_tips_about_them(client, ops_headers, db, me):
    response = client.put("/api/people/ana@example.com/visibility", headers=ops_headers,
                          json={"visibility": "restricted", "viewers": ["Boss@Example.com"], "external_tips": False})

    assert response.status_code == 200
    stored = people_store.by_email(db, "ana@example.com")
    assert (stored["visibility"], stored["viewers"], stored["external_tips"]) == ("restricted",
                                                                                  ["boss@example.com"], False)


@pytest.mark.parametrize(("body", "field"), [
    ({"visibility": "everyone"}, "/visibility"),
    ({"viewers": [f"v{n}@example.com" for n in range(1000)]}, "/viewers"),
    ({"viewers": ["not an address"]}, "/viewers"),
    ({"external_tips": "maybe"}, "/external_tips"),
    ({"colour": "blue"}, "/colour"),
])
def test_a_bad_say_is_a_400_naming_the_field_and_nothing_is_stored(client, ops_headers, db, me, body, field):
    response = client.put("/api/people/ana@example.com/visibility", headers=ops_headers, json=body)

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["pointer"] == field
    assert "visibility" not in people_store.by_email(db, "ana@example.com")
