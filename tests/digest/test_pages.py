from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from service.digest import links
from service.store import users as users_store
from tests.support.factories import add_event, add_people, add_user, attendee

START = datetime(2026, 7, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def meeting(db):
    user = add_user(db, time_zone="Europe/Paris")
    add_user(db, user_id="user-ben", email="ben@example.com", name="Ben")
    add_user(db, user_id="user-out", email="outsider@example.com", name="Out")
    add_people(db)
    return add_event(db, user.id, "g-1", START, START + timedelta(hours=1), subject="Pricing <decision>",
                     attendees=[attendee("me@example.com"), attendee("ana@example.com"),
                                attendee("ben@example.com"), attendee("cy@example.com"),
                                attendee("room@example.com", type_="resource"), attendee("x@partner.example")])


def _path(rt, event):
    return links.dashboard_url(rt.settings, str(event["_id"]), event["user_id"], event["graph_id"]).split(
        rt.settings.public_url)[1]


def test_dashboard_from_a_signed_link_shows_styles_chart_and_notes(client, rt, meeting):
    response = client.get(_path(rt, meeting))

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Pricing &lt;decision&gt;" in html
    assert "Wed 1 Jul, 17:00–18:00" in html and "times in Europe/Paris" in html
    assert html.count('class="attendee"') == 5  # the room is left out
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="style-mix" data-framework="disc"' in html
    bars = dict(re.findall(r'data-code="(\w)" x="\d+" y="\d+" width="([\d.]+)"', html))
    assert float(bars["D"]) > float(bars["C"]) > 0 and "I" not in bars     # nobody is an I: no empty row
    # The viewer (the owner, through the link) is marked, first, with no tips about themself; the others have tips.
    first = html.split('class="attendee"')[1]
    assert 'data-you="1"' in first and '<span class="you">you</span>' in first and "Morgan Me" in first
    assert html.count('<ul class="person-tips">') == 3           # Ana, Ben, Cy: everyone with a style
    assert "The assessment results shown here are visible to everyone in your organisation." in html
    assert "Several fast deciders and one careful analyst" in html
    assert "1 attendee is not in the people directory" in html
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("token", ["", "garbage", "x" * 3000])
def test_dashboard_refuses_bad_tokens(client, meeting, token):
    assert client.get(f"/meetings/{meeting['_id']}?t={token}").status_code == 403


def test_dashboard_refuses_expired_and_foreign_tokens(client, rt, meeting, monkeypatch):
    import itsdangerous.timed

    payload = {"u": meeting["user_id"], "g": meeting["graph_id"]}
    forged = URLSafeTimedSerializer("another-key", salt=links.DASHBOARD_SALT).dumps(payload)
    other_event = _path(rt, meeting).replace(str(meeting["_id"]), "0" * 24)
    issued = int((datetime.now(UTC) - links.DASHBOARD_MAX_AGE - timedelta(hours=1)).timestamp())
    with monkeypatch.context() as patch:
        patch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: issued)
        stale = links.dashboard_token(rt.settings, meeting["user_id"], meeting["graph_id"])

    assert client.get(f"/meetings/{meeting['_id']}?t={stale}").status_code == 403
    assert client.get(f"/meetings/{meeting['_id']}?t={forged}").status_code == 403
    assert client.get(other_event).status_code == 403
    assert client.get(_path(rt, meeting)).status_code == 200


def test_signed_in_attendee_sees_the_dashboard_and_others_do_not(client, meeting):
    path = f"/meetings/{meeting['_id']}"
    assert client.get(path).status_code == 403

    with client.session_transaction() as session:
        session["user_id"] = "user-ben"
    assert client.get(path).status_code == 200

    with client.session_transaction() as session:
        session["user_id"] = "user-out"
    assert client.get(path).status_code == 403


def test_settings_page_changes_time_zone_and_send_time(client, rt, db, meeting):
    token = links.settings_token(rt.settings, "user-1")

    page = client.get(f"/digest/settings?t={token}")
    saved = client.post("/digest/settings", data={"t": token, "enabled": "1", "time": "07:45",
                                                  "time_zone": "Tokyo Standard Time"})
    bad = client.post("/digest/settings", data={"t": token, "enabled": "1", "time": "27:00"})

    assert page.status_code == 200 and 'value="06:30"' in page.get_data(as_text=True)
    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    user = users_store.get(db, "user-1")
    assert user.digest.time == "07:45" and user.time_zone == "Asia/Tokyo"
    assert user.time_zone_source == "user"
    assert bad.status_code == 400
    assert client.get("/digest/settings?t=forged").status_code == 403


def test_one_click_unsubscribe(client, rt, db, meeting):
    token = links.settings_token(rt.settings, "user-1")

    confirm = client.get(f"/digest/unsubscribe?t={token}")
    assert users_store.get(db, "user-1").digest.enabled is True
    done = client.post(f"/digest/unsubscribe?t={token}", data={"List-Unsubscribe": "One-Click"})

    assert confirm.status_code == 200 and done.status_code == 200
    assert users_store.get(db, "user-1").digest.enabled is False
    assert client.post("/digest/unsubscribe?t=bad").status_code == 403


def test_the_dashboard_lists_people_from_outside_the_organization_apart(client, rt, db, meeting):
    html = client.get(_path(rt, meeting)).get_data(as_text=True)
    inside, outside = html.split('<h2 id="outside">From outside the organization</h2>')

    assert "x@partner.example" in outside and "x@partner.example" not in inside
    assert "ana@example.com" in inside and "ana@example.com" not in outside


def test_settings_page_sets_digest_days_and_meeting_prep(client, rt, db, meeting):
    token = links.settings_token(rt.settings, "user-1")
    db.users.update_one({"_id": "user-1"}, {"$unset": {"digest.days": ""}})   # as connecting leaves it: Mon-Fri

    page = client.get(f"/digest/settings?t={token}").get_data(as_text=True)
    saved = client.post("/digest/settings", data={"t": token, "enabled": "1", "days": ["0", "2", "5"],
                                                  "prep_minutes": "45", "prep_meetings": "external"})
    user = users_store.get(db, "user-1")
    off = client.post("/digest/settings", data={"t": token, "enabled": "1", "prep_minutes": ""})
    bad = [client.post("/digest/settings", data={"t": token, "enabled": "1", **form}).status_code
           for form in ({"days": ["7"]}, {"days": ["x"]}, {"prep_minutes": "4"}, {"prep_minutes": "90"},
                        {"prep_minutes": "soon"}, {"prep_meetings": "some"}, {"prep_min_size": "1"})]

    assert 'name="days" value="4" checked' in page and 'name="days" value="5" >' in page
    assert 'id="prep_minutes" name="prep_minutes" min="5" max="60" value="15"' in page
    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    assert user.digest.days == (0, 2, 5) and user.prep.minutes == 45 and user.prep.meetings == "external"
    assert off.status_code == 200 and users_store.get(db, "user-1").prep.enabled is False
    assert users_store.get(db, "user-1").digest.days == (0, 2, 5)      # no day ticked leaves them as they were
    assert bad == [400] * 7
