"""The channel choice: the settings page's section, the API (a user's choice, a tenant's default), and what a
channel's status says."""

from __future__ import annotations

import pytest

from service.digest import links
from service.store import channels as channels_store
from tests.support.factories import add_user


def test_the_settings_page_shows_the_section_and_saves_a_choice(client, rt, db):
    user = add_user(db)
    token = links.settings_token(rt.settings, user.id)

    page = client.get(f"/digest/settings?t={token}")
    saved = client.post("/channels/settings", data={"t": token, "digest": ["email", "slack"], "prep": ["teams"]})

    assert page.status_code == 200 and "Where messages go" in page.text and 'value="slack"' in page.text
    assert saved.status_code == 303 and "#channels" in saved.headers["Location"]
    assert "Channels saved." in client.get(saved.headers["Location"]).text
    choice = channels_store.choice(db, user.id)
    assert choice["digest"] == ["email", "slack"] and choice["prep"] == ["teams"] and choice["coaching"] == ["email"]


@pytest.mark.parametrize("form, status", [
    ({"digest": ["pigeon"]}, 400),
    ({}, 400),
])
def test_the_settings_section_refuses_unknown_channels_and_changes_nothing(client, rt, db, form, status):
    user = add_user(db)

    answer = client.post("/channels/settings", data={"t": links.settings_token(rt.settings, user.id), **form})

    assert answer.status_code == status
    assert channels_store.choice(db, user.id) == channels_store.DEFAULT


def test_the_settings_section_needs_the_signed_link(client, db):
    user = add_user(db)

    answer = client.post("/channels/settings", data={"t": "forged", "digest": ["slack"]})

    assert answer.status_code == 403 and channels_store.choice(db, user.id) == channels_store.DEFAULT


def test_the_api_sets_a_users_channels_over_the_tenants_default(client, db, ops_headers):
    user = add_user(db)

    tenant = client.put(f"/api/tenants/{user.tenant_id}/channels", headers=ops_headers,
                        json={"channels": {"prep": ["teams"]}})
    before = client.get(f"/api/users/{user.email}/channels", headers=ops_headers).json
    after = client.put(f"/api/users/{user.id}/channels", headers=ops_headers,
                       json={"channels": {"prep": ["email", "slack"]}}).json

    assert tenant.status_code == 200 and tenant.json["channels"]["prep"] == ["teams"]
    assert before["channels"]["prep"] == ["teams"] and before["channels"]["digest"] == ["email"]
    assert after["channels"]["prep"] == ["email", "slack"]
    assert after["status"]["email"] == "ok"
    assert after["status"]["slack"] == "unavailable: calsync's Slack app is not installed for your organisation"


@pytest.mark.parametrize("body", [{"channels": {"digest": []}}, {"channels": {"weekly": ["email"]}},
                                  {"channels": {"digest": ["fax"]}}, {"channels": []}, [], {"digest": ["email"]}])
def test_the_api_refuses_malformed_choices_with_a_problem(client, db, ops_headers, body):
    user = add_user(db)

    answer = client.put(f"/api/users/{user.id}/channels", headers=ops_headers, json=body)

    assert answer.status_code == 400 and answer.json["errors"][0]["pointer"] == "/channels"
    assert channels_store.choice(db, user.id) == channels_store.DEFAULT


def test_the_api_needs_the_bearer_token(client, db):
    user = add_user(db)

    assert client.get(f"/api/users/{user.id}/channels").status_code == 401
    assert client.put(f"/api/users/{user.id}/channels", json={"channels": {"digest": ["slack"]}}).status_code == 401
