from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.factories import add_event, add_people, add_user, attendee

START = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def seeded(db):
    user = add_user(db, user_id="00000000-aaaa-bbbb-cccc-000000000001", email="me@example.com",
                    time_zone="America/New_York", graph_time_zone="Eastern Standard Time")
    add_people(db)
    for i in range(5):
        start = START + timedelta(hours=9 + i)
        add_event(db, user.id, f"g{i}", start, start + timedelta(minutes=30), subject=f"Meeting {i}",
                  attendees=[attendee("ANA@example.com"), attendee("room@example.com", type_="resource"),
                             attendee("x@partner.example")])
    return user


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer "}])
@pytest.mark.parametrize("path", ["/api/users/me@example.com", "/api/people", "/api/users/x/meetings"])
def test_api_requires_the_bearer_token(client, headers, path):
    response = client.get(path, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["code"] == "unauthorized"


def test_user_by_email_or_graph_id(client, ops_headers, seeded):
    by_email = client.get("/api/users/ME@example.com", headers=ops_headers).get_json()
    by_id = client.get(f"/api/users/{seeded.id}", headers=ops_headers).get_json()

    assert by_email == by_id
    assert by_email["connection"]["status"] == "connected"
    assert by_email["time_zone"] == "America/New_York"
    assert by_email["graph_time_zone"] == "Eastern Standard Time"
    assert by_email["last_sync_at"].endswith("Z")
    assert client.get("/api/users/nobody@example.com", headers=ops_headers).status_code == 404


def test_meetings_in_a_window_paginated_with_matched_attendees(client, ops_headers, seeded):
    url = "/api/users/me@example.com/meetings?start=2026-07-01T00:00:00Z&end=2026-07-02T00:00:00Z&limit=2"
    seen, pages = [], 0
    while url:
        body = client.get(url, headers=ops_headers).get_json()
        seen += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        url = (f"/api/users/me@example.com/meetings?start=2026-07-01T00:00:00Z&end=2026-07-02T00:00:00Z"
               f"&limit=2&cursor={cursor}") if cursor else None

    assert pages == 3
    assert [m["id"] for m in seen] == [f"g{i}" for i in range(5)]
    first = seen[0]
    assert first["start"] == "2026-07-01T09:00:00Z" and first["end"] == "2026-07-01T09:30:00Z"
    assert "body" not in first
    ana, room, stranger = first["attendees"]
    assert ana["person"]["name"] == "Ana" and ana["person"]["styles"] == {"disc": "D", "enneagram": "8"}
    assert room["person"] is None and stranger["person"] is None


def test_meetings_window_excludes_outside_events(client, ops_headers, seeded):
    body = client.get("/api/users/me@example.com/meetings?start=2026-07-01T10:15:00%2B00:00"
                      "&end=2026-07-01T11:00:00Z", headers=ops_headers).get_json()

    assert [m["id"] for m in body["items"]] == ["g1"]
    assert body["next_cursor"] is None


@pytest.mark.parametrize("query", ["start=yesterday", "start=2026-07-02T00:00:00Z&end=2026-07-01T00:00:00Z",
                                   "start=2026-01-01T00:00:00Z&end=2028-01-01T00:00:00Z", "limit=0", "limit=abc",
                                   "limit=100000", "cursor=%%%", "cursor=WzFd"])
def test_bad_meeting_queries_are_400(client, ops_headers, seeded, query):
    response = client.get(f"/api/users/me@example.com/meetings?{query}", headers=ops_headers)

    assert response.status_code == 400
    assert response.get_json()["code"] == "bad_request"


def test_collaborators(client, ops_headers, seeded, db):
    now = datetime.now(UTC)
    add_event(db, seeded.id, "recent", now - timedelta(days=2), now - timedelta(days=2, hours=-1),
              attendees=[attendee("ben@example.com")])

    body = client.get("/api/users/me@example.com/collaborators?days=30", headers=ops_headers).get_json()

    assert body["days"] == 30
    assert body["items"][0]["email"] == "ben@example.com"
    assert body["items"][0]["person"]["styles"] == {"disc": "D"}
    assert client.get("/api/users/me@example.com/collaborators?days=0", headers=ops_headers).status_code == 400


def test_people_api_imports_lists_and_deletes(client, ops_headers):
    response = client.post("/api/people", headers=ops_headers, json=[
        {"email": "Zoe@Example.com", "name": "Zoe", "assessments": {"enneagram": {"type": "2", "wing": "3"}}},
        {"email": "bad"},
    ])
    assert response.status_code == 200
    assert response.get_json() == {"created": 1, "updated": 0, "unchanged": 0,
                                   "rejected": [{"row": 2, "reason": "email is not a valid address",
                                                 "problems": ["email is not a valid address"]}]}

    for i in range(3):
        client.post("/api/people", headers=ops_headers, json={"email": f"p{i}@example.com"})
    listed, cursor = [], None
    while True:
        body = client.get("/api/people?limit=3" + (f"&cursor={cursor}" if cursor else ""),
                          headers=ops_headers).get_json()
        listed += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert sorted(p["email"] for p in listed) == ["p0@example.com", "p1@example.com", "p2@example.com",
                                                  "zoe@example.com"]

    zoe = client.get("/api/people/zoe@example.com", headers=ops_headers).get_json()
    assert zoe["styles"] == {"enneagram": "2"}
    assert client.delete(f"/api/people/{zoe['id']}", headers=ops_headers).status_code == 204
    assert client.get("/api/people/zoe@example.com", headers=ops_headers).status_code == 404


@pytest.mark.parametrize("body", ["not json", "3", '"text"'])
def test_people_api_rejects_bad_bodies(client, ops_headers, body):
    response = client.post("/api/people", headers={**ops_headers, "Content-Type": "application/json"}, data=body)

    assert response.status_code == 400


def test_people_api_with_only_bad_rows_is_422(client, ops_headers):
    response = client.post("/api/people", headers=ops_headers, json=[{"email": "nope"}])

    assert response.status_code == 422
