"""Every browser form refuses a POST without this session's CSRF token (Flask-WTF's CSRFProtect), with a
clean 400/403 whatever the field holds; the bearer-token APIs, the webhooks and the link-token digest
forms do not need one."""

import re

import pytest

from service.digest import links
from service.store import users
from tests.support.serving import OPS_TOKEN

ME = {"id": "11111111-2222-3333-4444-555555555555", "displayName": "Ada Lovelace", "mail": "ada@contoso.com"}
GARBAGE = ["", "nope", "é" * 40, "\u202e\x00", "a.b.c", "x" * 5000]


@pytest.fixture
def signed_in(client, rt):
    users.upsert_from_graph(rt.db, ME, "tid", "home")
    with client.session_transaction() as session:
        session["user_id"] = ME["id"]
    return client


@pytest.fixture
def operator(client):
    page = client.get("/ops/login").get_data(as_text=True)
    client.post("/ops/login", data={"token": OPS_TOKEN, "csrf_token": token_in(page)})
    return client


def token_in(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def connected(rt) -> bool:
    return users.get(rt.db, ME["id"]).connection.status == users.CONNECTED


@pytest.mark.parametrize("forged", [None, *GARBAGE])
def test_user_forms_refuse_a_missing_or_forged_token(signed_in, rt, forged):
    data = {} if forged is None else {"csrf_token": forged}
    token_in(signed_in.get("/connections/me").get_data(as_text=True))  # the session has a real token

    responses = [signed_in.post(path, data={**data, "purge": "1"})
                 for path in ("/connect", "/signout", "/connections/me/disconnect")]

    assert [r.status_code for r in responses] == [400, 400, 400]
    assert all("This form expired" in r.get_data(as_text=True) for r in responses)
    assert connected(rt)
    assert signed_in.get("/connections/me", headers={"Accept": "application/json"}).status_code == 200


def test_signing_out_with_the_pages_token_clears_the_session(signed_in):
    token = token_in(signed_in.get("/connections/me").get_data(as_text=True))

    response = signed_in.post("/signout", data={"csrf_token": token})

    assert response.status_code == 303
    assert signed_in.get("/connections/me", headers={"Accept": "application/json"}).status_code == 401


def test_a_token_from_another_session_is_refused(client, app, signed_in, rt):
    other = app.test_client()
    foreign = token_in(other.get("/connect").get_data(as_text=True))

    response = signed_in.post("/connections/me/disconnect", data={"csrf_token": foreign, "purge": "1"})

    assert response.status_code == 400 and connected(rt)


@pytest.mark.parametrize("forged", [None, *GARBAGE])
def test_ops_login_refuses_a_missing_or_forged_token(client, forged):
    client.get("/ops/login")
    data = {"token": OPS_TOKEN} if forged is None else {"token": OPS_TOKEN, "csrf_token": forged}

    response = client.post("/ops/login", data=data)

    assert response.status_code == 403
    assert client.get("/ops/api/health").status_code == 401  # not signed in


@pytest.mark.parametrize("path", ["/ops/queues/sync/requeue-failed", "/ops/users/u1/resync",
                                  "/ops/users/u1/subscription", "/ops/logout"])
@pytest.mark.parametrize("forged", [None, "é" * 40, "nope"])
def test_ops_forms_refuse_a_missing_or_forged_token(operator, path, forged):
    response = operator.post(path, data={} if forged is None else {"csrf_token": forged})

    assert response.status_code == 403
    assert operator.get("/ops/api/health").status_code == 200  # still signed in: logout refused too


def test_ops_forms_work_with_the_dashboards_token_and_scripts_need_only_the_bearer(operator, client, ops_headers):
    token = token_in(operator.get("/ops/").get_data(as_text=True))

    assert operator.post("/ops/queues/sync/requeue-failed", data={"csrf_token": token}).status_code == 303
    with client.session_transaction() as session:
        session.clear()
    assert client.post("/ops/queues/sync/requeue-failed", headers=ops_headers).status_code == 202


def test_a_digest_change_needs_the_signed_link_token_not_the_session(signed_in, rt):
    refused = signed_in.post("/digest/settings", data={"enabled": "0"})
    also_refused = signed_in.post("/digest/unsubscribe")

    assert (refused.status_code, also_refused.status_code) == (403, 403)
    assert users.get(rt.db, ME["id"]).digest.enabled is True


def test_one_click_unsubscribe_needs_no_session_and_no_form_token(app, rt):
    users.upsert_from_graph(rt.db, ME, "tid", "home")
    token = links.settings_token(rt.settings, ME["id"])

    response = app.test_client().post(f"/digest/unsubscribe?t={token}", data={"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert users.get(rt.db, ME["id"]).digest.enabled is False
