"""The API's settings, coaching and tenant-domain routes: auth, validation (4xx, never a 500), pagination
of meetings with attendees marked internal or external."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.store import users as users_store
from service.store import utcnow
from tests.support.factories import add_event, attendee

ROUTES = [("GET", "/api/users/me@example.com/settings"), ("PATCH", "/api/users/me@example.com/settings"),
          ("GET", "/api/users/me@example.com/coaching"), ("GET", "/api/tenants/tenant-1/domains"),
          ("PUT", "/api/tenants/tenant-1/domains")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_the_new_routes_need_the_bearer_token(client, me, method, path, headers):
    response = client.open(path, method=method, headers=headers, json={})

    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


def test_settings_default_to_weekdays_and_a_15_minute_prep(client, ops_headers, db):
    db.users.insert_one({"_id": "fresh", "email": "fresh@example.com", "connection": {"status": "connected"}})

    body = client.get("/api/users/fresh/settings", headers=ops_headers).get_json()

    assert body == {"digest": {"enabled": True, "time": None, "send_empty": False,
                               "days": ["mon", "tue", "wed", "thu", "fri"]},
                    "prep": {"enabled": True, "minutes": 15, "meetings": "all", "min_size": 3}}
    assert client.get("/api/users/fresh", headers=ops_headers).get_json()["prep"]["minutes"] == 15


def test_settings_change_through_the_api_and_move_the_next_digest(client, ops_headers, db, me):
    changed = client.patch("/api/users/me@example.com/settings", headers=ops_headers, json={
        "digest": {"days": ["sat", "SUN"], "time": "7:05", "send_empty": True},
        "prep": {"minutes": 30, "meetings": "min_size", "min_size": 4}})

    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json() == {"digest": {"enabled": True, "time": "07:05", "send_empty": True,
                                             "days": ["sat", "sun"]},
                                  "prep": {"enabled": True, "minutes": 30, "meetings": "min_size", "min_size": 4}}
    stored = users_store.get(db, me.id)
    assert datetime.fromisoformat(stored.digest.next_date).weekday() in (5, 6)
    off = client.patch(f"/api/users/{me.id}/settings", headers=ops_headers, json={"prep": {"enabled": False}})
    assert off.get_json()["prep"] == {"enabled": False, "minutes": None, "meetings": "min_size", "min_size": 4}


@pytest.mark.parametrize("body", [
    None, [], "text", {"digest": 3}, {"other": {}}, {"digest": {"days": []}}, {"digest": {"days": ["monday"]}},
    {"digest": {"days": "mon"}}, {"digest": {"days": [1]}}, {"digest": {"time": "25:00"}},
    {"digest": {"time": "0630"}}, {"digest": {"time": 630}}, {"digest": {"enabled": "yes"}},
    {"digest": {"colour": "red"}}, {"prep": {"minutes": 4}}, {"prep": {"minutes": 61}}, {"prep": {"minutes": "15"}},
    {"prep": {"minutes": True}}, {"prep": {"minutes": 15.5}}, {"prep": {"meetings": "some"}},
    {"prep": {"min_size": 1}}, {"prep": {"min_size": 10**30}}, {"prep": {"enabled": 1}}, {"prep": []},
])
def test_bad_settings_are_a_400_that_changes_nothing(client, ops_headers, db, me, body):
    before = db.users.find_one({"_id": me.id})

    response = client.patch("/api/users/me@example.com/settings", headers=ops_headers, json=body)

    assert response.status_code == 400 and response.get_json()["code"] == "bad_request"
    assert db.users.find_one({"_id": me.id}) == before


def test_settings_of_an_unknown_user_are_a_404(client, ops_headers, me):
    assert client.get("/api/users/nobody@example.com/settings", headers=ops_headers).status_code == 404
    assert client.patch("/api/users/x/settings", headers=ops_headers, json={"prep": {}}).status_code == 404


def test_coaching_answers_up_to_five_suggestions_for_the_local_day(client, ops_headers, db, me):
    today = utcnow().astimezone(ZoneInfo("Europe/Paris")).date()
    start = datetime(today.year, today.month, today.day, 8, 0, tzinfo=UTC)   # 10:00 in Paris in summer, 09:00 in winter
    add_event(db, me.id, "m1", start, start + timedelta(hours=1), attendees=[attendee("ana@example.com")])

    body = client.get("/api/users/me@example.com/coaching", headers=ops_headers).get_json()
    one = client.get(f"/api/users/{me.id}/coaching?date={today.isoformat()}&limit=1", headers=ops_headers)

    assert body["date"] == today.isoformat() and body["time_zone"] == "Europe/Paris"
    [item] = body["items"]
    assert item["person"]["email"] == "ana@example.com" and item["reason"] == "meeting_today"
    assert item["why"].startswith("meeting them today at ") and item["tip"] and item["framework"] in ("disc",
                                                                                                      "enneagram")
    assert one.status_code == 200 and one.get_json()["items"] == body["items"]


@pytest.mark.parametrize("query", ["date=yesterday", "date=2026-13-01", "date=2000-01-01", "date=%00",
                                   "limit=0", "limit=6", "limit=x", "date=" + "9" * 500])
def test_bad_coaching_queries_are_a_400(client, ops_headers, me, query):
    response = client.get(f"/api/users/me@example.com/coaching?{query}", headers=ops_headers)

    assert response.status_code == 400 and response.get_json()["code"] == "bad_request"


def test_tenant_domains_are_set_read_and_validated(client, ops_headers, me):
    url = "/api/tenants/tenant-1/domains"

    put = client.put(url, headers=ops_headers, json={"domains": ["Contoso.COM", "@fabrikam.example", "contoso.com"]})
    bad = [client.put(url, headers=ops_headers, json=body).status_code
           for body in ({"domains": ["not a domain"]}, {"domains": "x.com"}, [], {"domains": [3]},
                        {"domains": ["a.com"] * 101})]

    assert put.status_code == 200 and put.get_json()["domains"] == ["contoso.com", "fabrikam.example"]
    assert client.get(url, headers=ops_headers).get_json()["domains"] == ["contoso.com", "fabrikam.example"]
    assert bad == [400] * 5
    assert client.get("/api/tenants/bad%20id/domains", headers=ops_headers).status_code == 400


def test_meetings_page_through_with_attendees_marked_internal_or_external(client, ops_headers, db, me):
    client.put("/api/tenants/tenant-1/domains", headers=ops_headers, json={"domains": ["example.org"]})
    start = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    for n in range(5):
        add_event(db, me.id, f"g{n}", start + timedelta(hours=n), start + timedelta(hours=n, minutes=30),
                  attendees=[attendee("ana@example.com"), attendee("ana.alias@example.org"),
                             attendee("guest@partner.example"), attendee("room@example.com", type_="resource")])
    url, seen = "/api/users/me@example.com/meetings?start=2026-07-01T00:00:00Z&end=2026-07-02T00:00:00Z&limit=2", []
    while url:
        body = client.get(url, headers=ops_headers).get_json()
        seen += body["items"]
        url = f"{url.split('&cursor=')[0]}&cursor={body['next_cursor']}" if body["next_cursor"] else None

    assert [m["id"] for m in seen] == [f"g{n}" for n in range(5)]
    assert {(a["email"], a["external"]) for m in seen for a in m["attendees"]} == {
        ("ana@example.com", False), ("ana.alias@example.org", False), ("guest@partner.example", True),
        ("room@example.com", False)}


@pytest.mark.parametrize("query", ["limit=%C2%B2", "date=%C2%B2026-01-01", "limit=%C2%B9%C2%B2"])
def test_digits_that_are_not_decimal_are_a_400_not_a_500(client, ops_headers, me, query):
    assert client.get(f"/api/users/me@example.com/coaching?{query}", headers=ops_headers).status_code == 400


def test_the_settings_form_refuses_superscript_digits(client, rt, me):
    from service.digest import links

    token = links.settings_token(rt.settings, me.id)
    answers = [client.post("/digest/settings", data={"t": token, "enabled": "1", **form}).status_code
               for form in ({"time": "²:30"}, {"prep_minutes": "²"}, {"days": ["²"]}, {"prep_min_size": "³"})]

    assert answers == [400] * 4
