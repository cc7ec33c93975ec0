"""The connect flow end to end against the emulator: real HTTP, real MSAL, real Redis."""

import json
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from service.cli.demo import browser_session
from service.identity import crypto
from service.queues import ENSURE_SUBSCRIPTION, SUBSCRIPTIONS, get_queue
from service.store import users
from tests.support.connect import (
    connect_session,
    connect_user,
    emulated_user,
    sign_in_at_emulator,
    start_connect,
)


def stored_state(stack) -> dict:
    db = stack.runtime.db
    return {"users": db.users.count_documents({}), "token_caches": db.token_caches.count_documents({})}


def raw_dump(stack) -> str:
    """Every stored document, as a backup would hold it."""
    db = stack.runtime.db
    docs = {name: list(db[name].find({})) for name in db.list_collection_names()}
    return json.dumps(docs, default=str)


def cache_secrets(stack, user_id: str) -> list[str]:
    blob = stack.runtime.db.token_caches.find_one({"_id": user_id})["blob"]
    cache = json.loads(crypto.decrypt(stack.settings, blob))
    return [entry["secret"] for kind in ("AccessToken", "RefreshToken", "IdToken")
            for entry in cache.get(kind, {}).values()]


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    query = {k: v for k, v in query.items() if v is not None}
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_connecting_stores_the_user_an_encrypted_cache_and_queues_the_first_sync(stack):
    alice = emulated_user(stack, mail="Alice@Contoso.com", display_name="Alice Liddell")

    user_id, session = connect_session(stack, alice["id"], time_zone="Europe/Paris")

    user = users.get(stack.runtime.db, user_id)
    assert user_id == alice["id"]
    assert user.tenant_id == alice["tenant_id"]
    assert (user.email, user.display_name, user.time_zone) == ("alice@contoso.com", "Alice Liddell", "Europe/Paris")
    assert user.connection.status == users.CONNECTED
    assert user.connection.home_account_id == f"{alice['id']}.{alice['tenant_id']}"
    assert user.digest.next_at is not None   # the first digest is planned
    queued = get_queue(SUBSCRIPTIONS, stack.runtime.redis).jobs
    assert [(j.func_name, j.args) for j in queued] == [(ENSURE_SUBSCRIPTION, (user_id,))]
    assert list(stack.runtime.redis.scan_iter("calsync:auth-flow:*")) == []  # the PKCE flow is one-time
    status = session.get(f"{stack.url}/connections/me", timeout=10)
    assert status.status_code == 200 and "Connected" in status.text and "alice@contoso.com" in status.text


def test_a_dump_of_the_database_holds_no_token_in_plain_text(stack):
    alice = emulated_user(stack)
    user_id = connect_user(stack, alice["id"])

    secrets = cache_secrets(stack, user_id)
    dump = raw_dump(stack)

    assert len(secrets) >= 3  # access, refresh and id token are all in the cache...
    assert all(len(secret) > 20 and secret not in dump for secret in secrets)  # ...and none is readable
    assert '"RefreshToken"' not in dump and '"secret"' not in dump


def test_the_session_cookie_is_httponly_and_samesite_and_holds_no_token(stack):
    alice = emulated_user(stack)
    session = browser_session()
    authorize_url = start_connect(stack, session)
    callback = session.get(sign_in_at_emulator(stack, authorize_url, alice["id"]), timeout=30)

    header = callback.headers["Set-Cookie"]
    cookie = session.cookies.get("calsync_session")

    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert all(secret not in cookie for secret in cache_secrets(stack, alice["id"]))
    assert len(cookie) < 300  # a user id and a CSRF token, nothing more


@pytest.mark.parametrize("change, status", [
    ({"state": "forged-state"}, 400),
    ({"code": None}, 400),
    ({"code": None, "error": "access_denied", "error_description": "AADSTS65004: declined"}, 403),
    ({"code": "not-a-real-code"}, 400),
])
def test_a_bad_callback_shows_a_friendly_page_and_stores_nothing(stack, change, status):
    alice = emulated_user(stack)
    session = browser_session()
    redirect = sign_in_at_emulator(stack, start_connect(stack, session), alice["id"])

    response = session.get(with_query(redirect, **change), timeout=30)

    assert response.status_code == status
    assert "<h1>" in response.text and "Traceback" not in response.text
    assert stored_state(stack) == {"users": 0, "token_caches": 0}


def test_declining_at_microsoft_is_a_403_page_and_stores_nothing(stack):
    alice = emulated_user(stack)
    session = browser_session()
    redirect = sign_in_at_emulator(stack, start_connect(stack, session), alice["id"], accept=False)

    response = session.get(redirect, timeout=30)

    assert response.status_code == 403
    assert "Calendar access was not granted" in response.text
    assert stored_state(stack) == {"users": 0, "token_caches": 0}


def test_a_replayed_callback_is_refused(stack):
    alice = emulated_user(stack)
    session = browser_session()
    redirect = sign_in_at_emulator(stack, start_connect(stack, session), alice["id"])
    old_cookie = session.cookies.get("calsync_session")
    assert session.get(redirect, timeout=30).status_code == 200

    replay = browser_session()
    replay.cookies.set("calsync_session", old_cookie)  # even with the cookie from before the callback
    response = replay.get(redirect, timeout=30)

    assert response.status_code == 400
    assert "expired" in response.text


def test_a_callback_without_a_started_flow_is_refused(stack):
    response = browser_session().get(f"{stack.url}/auth/callback?code=abc&state=xyz", timeout=10)

    assert response.status_code == 400
    assert stored_state(stack) == {"users": 0, "token_caches": 0}


def test_starting_a_connect_needs_the_forms_csrf_token(stack):
    response = browser_session().post(f"{stack.url}/connect", data={"csrf_token": "guess"}, allow_redirects=False,
                                      timeout=10)

    assert response.status_code == 400


def test_the_connect_page_says_what_is_read_and_what_is_not(stack):
    page = browser_session().get(f"{stack.url}/connect", timeout=10)

    assert page.status_code == 200
    assert "Connect Microsoft 365 calendar" in page.text
    assert "attendees" in page.text and "descriptions" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_a_bogus_browser_time_zone_is_ignored(stack):
    alice = emulated_user(stack)

    user_id = connect_user(stack, alice["id"], time_zone="../../etc/passwd")

    assert users.get(stack.runtime.db, user_id).time_zone is None


def test_status_is_401_for_a_visitor_who_is_not_signed_in(stack):
    response = browser_session().get(f"{stack.url}/connections/me", headers={"Accept": "application/json"},
                                     timeout=10)

    assert response.status_code == 401
