"""Workers' access tokens: refresh, concurrent refresh, revoked grants, broken caches, disconnect."""

import json
import logging
import threading
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet

from service.cli.keys import rotate_all
from service.identity import crypto
from service.identity.tokens import MEMO_SECONDS, ReconnectRequired
from service.queues import MAINTENANCE, get_queue
from service.runtime import Runtime
from service.store import users
from service.workers import jobs as worker_jobs
from service.workers.inprocess import work_burst
from tests.support.connect import connect_session, connect_user, emulated_user

SHORT_LIVED = 200  # under MSAL's five-minute margin: every silent call must redeem the refresh token


def blob_of(stack, user_id):
    return stack.runtime.db.token_caches.find_one({"_id": user_id})["blob"]


def set_lifetimes(stack, **seconds):
    stack.emulator.control.request("POST", "/identity/lifetimes", seconds)


def revoke(stack, user_id):
    return stack.emulator.control.request("POST", "/identity/revoke", {"user_id": user_id})["revoked"]


def send_mail_jobs(stack) -> None:
    work_burst(stack.runtime.redis, (MAINTENANCE,))


def test_a_cached_token_is_served_without_rewriting_the_cache(stack):
    alice = emulated_user(stack)
    user_id = connect_user(stack, alice["id"])
    before = stack.runtime.db.token_caches.find_one({"_id": user_id})

    token = stack.runtime.tokens.access_token(user_id)
    again = stack.runtime.tokens.access_token(user_id)

    after = stack.runtime.db.token_caches.find_one({"_id": user_id})
    assert token == again
    assert (after["blob"], after["updated_at"]) == (before["blob"], before["updated_at"])


def test_an_expiring_access_token_is_refreshed_and_the_new_cache_stored(stack):
    set_lifetimes(stack, access_token_seconds=SHORT_LIVED)
    alice = emulated_user(stack)
    user_id = connect_user(stack, alice["id"])
    first_blob = blob_of(stack, user_id)

    token = stack.runtime.tokens.access_token(user_id)

    assert blob_of(stack, user_id) != first_blob
    me = stack.runtime.tokens.graph(user_id).get_json("/me")
    assert me["id"] == alice["id"] and token
    grants = stack.emulator.control.request("GET", "/identity/grants", params={"user_id": alice["id"]})["value"]
    assert len(grants) == 1  # the refresh token rotated: one live grant, not two


def test_workers_refreshing_the_same_user_at_once_all_get_a_token(stack):
    # The emulator, like Entra, refuses a refresh token that was already redeemed: without the per-user lock
    # and the re-read under it, all but one of these refreshes would end in invalid_grant.
    set_lifetimes(stack, access_token_seconds=SHORT_LIVED)
    alice = emulated_user(stack)
    user_id = connect_user(stack, alice["id"])
    results, errors = [], []

    def worker():
        rt = Runtime(stack.settings, db=stack.runtime.db, redis_conn=stack.runtime.redis)
        try:
            results.append(rt.tokens.access_token(user_id))
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(results) == 6
    assert users.get(stack.runtime.db, user_id).connection.status == users.CONNECTED


def test_a_revoked_grant_marks_needs_reconnect_and_mails_the_user_once(stack, smtp_inbox):
    alice = emulated_user(stack, mail="alice@contoso.com")
    user_id = connect_user(stack, alice["id"])
    assert revoke(stack, alice["id"]) == 1

    with pytest.raises(ReconnectRequired) as first:
        stack.runtime.tokens.access_token(user_id, force_refresh=True)
    with pytest.raises(ReconnectRequired):
        stack.runtime.tokens.access_token(user_id, force_refresh=True)  # no second refresh, no second mail
    send_mail_jobs(stack)
    send_mail_jobs(stack)

    connection = users.get(stack.runtime.db, user_id).connection
    assert first.value.reason == "invalid_grant"
    assert (connection.status, connection.reason) == (users.NEEDS_RECONNECT, "invalid_grant")
    assert connection.since is not None
    assert len(smtp_inbox.messages) == 1
    assert smtp_inbox.messages[0]["To"] == "alice@contoso.com"
    assert f"{stack.url}/connect" in smtp_inbox.messages[0].get_content()


def test_reconnecting_restores_the_user_and_a_second_loss_within_a_day_sends_no_second_mail(stack, smtp_inbox):
    alice = emulated_user(stack, mail="alice@contoso.com")
    user_id = connect_user(stack, alice["id"])
    created_at = users.get(stack.runtime.db, user_id).created_at
    stack.runtime.db.events.insert_one({"user_id": user_id, "graph_id": "kept", "subject": "1:1"})
    revoke(stack, alice["id"])
    with pytest.raises(ReconnectRequired):
        stack.runtime.tokens.access_token(user_id, force_refresh=True)
    send_mail_jobs(stack)

    page = connect_session(stack, alice["id"])[1].get(f"{stack.url}/connect", timeout=10)
    restored = users.get(stack.runtime.db, user_id)
    token = stack.runtime.tokens.access_token(user_id, force_refresh=True)
    revoke(stack, alice["id"])
    with pytest.raises(ReconnectRequired):
        stack.runtime.tokens.access_token(user_id, force_refresh=True)
    send_mail_jobs(stack)

    assert page.status_code == 200
    assert restored.connection.status == users.CONNECTED and token
    assert restored.created_at == created_at
    assert stack.runtime.db.events.count_documents({"user_id": user_id}) == 1
    assert len(smtp_inbox.messages) == 1  # the second loss came within 24 h of the first mail

    stack.runtime.db.users.update_one({"_id": user_id}, {"$set": {
        "connection.reconnect_mail_sent_at": restored.connection.reconnect_mail_sent_at - timedelta(hours=25)}})
    connect_user(stack, alice["id"])
    revoke(stack, alice["id"])
    with pytest.raises(ReconnectRequired):
        stack.runtime.tokens.access_token(user_id, force_refresh=True)
    send_mail_jobs(stack)

    assert len(smtp_inbox.messages) == 2


def test_a_tampered_cache_is_logged_and_marks_needs_reconnect_instead_of_crashing(stack, caplog):
    alice = emulated_user(stack)
    user_id = connect_user(stack, alice["id"])
    blob = blob_of(stack, user_id)
    stack.runtime.db.token_caches.update_one({"_id": user_id}, {"$set": {"blob": blob[:60] + "x" + blob[61:]}})

    with caplog.at_level(logging.ERROR), pytest.raises(ReconnectRequired) as raised:
        stack.runtime.tokens.access_token(user_id)
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(ReconnectRequired):
        stack.runtime.tokens.access_token(user_id)  # the next job gives up at once, quietly

    assert raised.value.reason == "token_cache_unreadable"
    assert users.get(stack.runtime.db, user_id).connection.status == users.NEEDS_RECONNECT
    assert caplog.text == ""
    assert len(get_queue(MAINTENANCE, stack.runtime.redis).jobs) == 1  # one reconnect mail queued


def test_a_cache_under_an_unknown_key_is_logged_and_marks_needs_reconnect(stack, caplog):
    alice = emulated_user(stack)
    user_id = connect_user(stack, alice["id"])
    other_key = Runtime(stack.settings.with_overrides(token_keys=(Fernet.generate_key().decode(),)),
                        db=stack.runtime.db, redis_conn=stack.runtime.redis)

    with caplog.at_level(logging.ERROR), pytest.raises(ReconnectRequired):
        other_key.tokens.access_token(user_id)

    assert "unreadable" in caplog.text and "CALSYNC_TOKEN_KEYS" in caplog.text
    assert blob_of(stack, user_id) not in caplog.text
    assert users.get(stack.runtime.db, user_id).connection.status == users.NEEDS_RECONNECT


def test_a_cache_that_decrypts_to_garbage_also_means_reconnect(stack):
    alice = emulated_user(stack)
    user_id = connect_user(stack, alice["id"])
    stack.runtime.db.token_caches.update_one(
        {"_id": user_id}, {"$set": {"blob": crypto.encrypt(stack.settings, "not json")}})

    with pytest.raises(ReconnectRequired):
        stack.runtime.tokens.access_token(user_id)


def test_rotated_keys_keep_workers_running(stack):
    alice = emulated_user(stack)
    user_id = connect_user(stack, alice["id"])
    new_key = Fernet.generate_key().decode()
    rotated_settings = stack.settings.with_overrides(token_keys=(new_key, *stack.settings.token_keys))
    rotated = Runtime(rotated_settings, db=stack.runtime.db, redis_conn=stack.runtime.redis)

    report = rotate_all(rotated.settings, rotated.db)
    new_only = Runtime(stack.settings.with_overrides(token_keys=(new_key,)), db=stack.runtime.db,
                       redis_conn=stack.runtime.redis)

    assert report.rotated == 1
    assert new_only.tokens.access_token(user_id, force_refresh=True)


def test_disconnecting_needs_the_csrf_token(stack):
    alice = emulated_user(stack)
    user_id, session = connect_session(stack, alice["id"])

    response = session.post(f"{stack.url}/connections/me/disconnect", data={"purge": "1"}, timeout=10)

    assert response.status_code == 400 and "This form expired" in response.text
    assert users.get(stack.runtime.db, user_id).connection.status == users.CONNECTED


@pytest.mark.parametrize("purge, events_left", [("0", 1), ("1", 0)])
def test_disconnecting_deletes_tokens_and_keeps_or_purges_events(stack, purge, events_left):
    alice = emulated_user(stack)
    user_id, session = connect_session(stack, alice["id"])
    stack.runtime.db.events.insert_one({"user_id": user_id, "graph_id": "e1", "subject": "Standup"})
    page = session.get(f"{stack.url}/connections/me", timeout=10).text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]

    response = session.post(f"{stack.url}/connections/me/disconnect", data={"csrf_token": token, "purge": purge},
                            timeout=30)

    assert response.status_code == 200 and "disconnected" in response.text
    assert users.get(stack.runtime.db, user_id).connection.status == users.DISCONNECTED
    assert stack.runtime.db.token_caches.count_documents({"_id": user_id}) == 0
    assert stack.runtime.db.events.count_documents({"user_id": user_id}) == events_left
    with pytest.raises(ReconnectRequired):
        stack.runtime.tokens.access_token(user_id)


def test_disconnecting_deletes_the_graph_subscription(stack):
    alice = emulated_user(stack)
    user_id, session = connect_session(stack, alice["id"])

    worker_jobs.ensure_subscription(user_id)
    assert [s["status"] for s in stack.emulator.control.subscriptions()] != ["deleted"]
    page = session.get(f"{stack.url}/connections/me", timeout=10).text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]

    session.post(f"{stack.url}/connections/me/disconnect", data={"csrf_token": token, "purge": "0"}, timeout=30)

    assert [s["status"] for s in stack.emulator.control.subscriptions()] == ["deleted"]
    assert stack.runtime.db.subscriptions.count_documents({"user_id": user_id}) == 0


def test_the_status_page_tells_a_user_who_must_reconnect(stack):
    alice = emulated_user(stack)
    user_id, session = connect_session(stack, alice["id"])
    users.mark_needs_reconnect(stack.runtime.db, user_id, "invalid_grant")

    page = session.get(f"{stack.url}/connections/me", timeout=10)
    status = session.get(f"{stack.url}/connections/me", headers={"Accept": "application/json"}, timeout=10).json()

    assert "Needs to be reconnected" in page.text and 'href="/connect"' in page.text
    assert (status["status"], status["reason"]) == ("needs_reconnect", "invalid_grant")
    assert json.dumps(status)  # plain JSON, no tokens


def test_a_process_reuses_a_users_token_across_jobs_and_reads_the_connection_again_after_memo_seconds(stack):
    alice = emulated_user(stack)
    user_id = connect_user(stack, alice["id"])
    tokens, seen = stack.runtime.tokens, []
    clock = [1_000.0]
    tokens._memo(user_id).clock = lambda: clock[0]
    reads = []
    real = tokens._acquire
    tokens._acquire = lambda uid, force, source="user": reads.append(uid) or real(uid, force, source)

    for _ in range(3):                             # three jobs, each with its own GraphClient
        seen.append(tokens.graph(user_id).get_json("/me")["id"])
    assert seen == [alice["id"]] * 3 and len(reads) == 1

    users.set_connection_status(stack.runtime.db, user_id, "disconnected")   # another process disconnected
    clock[0] += MEMO_SECONDS + 1
    with pytest.raises(ReconnectRequired):
        tokens.graph(user_id).get_json("/me")
    assert len(reads) == 2
