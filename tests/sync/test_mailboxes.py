"""Mailboxes that cannot sync (issue 21): a status with its reason on the connection page, in the operators' view
and in connection.status_changed; one check a day, no retry storm; recovery on its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from service.graph import GraphError, mailbox_unavailable
from service.outbound import endpoints
from service.store import subscriptions as subscription_store
from service.store import users
from service.subscriptions import sweep
from service.workers import jobs
from tests.support.connect import connect_session, emulated_user

DISCARD = "http://127.0.0.1:9/hooks"
STATES = {"no_license": "no_exchange_mailbox", "guest": "no_exchange_mailbox", "on_premises": "no_exchange_mailbox",
          "not_supported": "no_exchange_mailbox", "invalid_user": "mailbox_not_found",
          "access_denied": "mailbox_access_denied", "disabled": "mailbox_access_denied"}


def body(subject: str, days: float = 1) -> dict:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=days)
    end = start + timedelta(minutes=30)
    return {"subject": subject, "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}}


def status_events(stack, user_id: str) -> list[tuple]:
    found = stack.runtime.db.outbound_events.find({"type": "connection.status_changed", "user_id": user_id})
    return [(d["status"], d["reason"], d["previous_status"]) for d in
            (json.loads(e["body"])["data"] for e in sorted(found, key=lambda e: e["sequence"]))]


def mailbox_requests(stack, user_id: str) -> int:
    return sum(1 for r in stack.emulator.emulator.requests_log()
               if f"/users/{user_id}/" in r["path"] or r["path"] == "/v1.0/subscriptions")


def run_every_sweep(stack) -> None:
    db, redis = stack.runtime.db, stack.runtime.redis
    for _ in range(3):
        jobs.reconcile_sweep()
        sweep.renewal_sweep(db, redis, stack.settings, datetime.now(UTC))
        stack.run_jobs()


@pytest.fixture
def outbound(stack):
    endpoints.register(stack.runtime.db, stack.settings.with_overrides(outbound_allow_private=True), DISCARD,
                       ["connection.status_changed"])


@pytest.mark.parametrize("state", sorted(STATES))
def test_a_mailbox_graph_cannot_read_gives_a_status_with_its_reason_and_no_retry_storm(stack, outbound, ops_headers,
                                                                                       state):
    person = emulated_user(stack, mail=f"{state}@contoso.com")
    stack.emulator.control.set_mailbox(person["id"], state)

    user_id, session = connect_session(stack, person["id"])
    stack.run_jobs()
    requests_then = mailbox_requests(stack, user_id)
    run_every_sweep(stack)

    user = users.get(stack.runtime.db, user_id)
    assert (user.connection.status, user.connection.reason) == ("cannot_sync", STATES[state])
    assert user.connection.next_check_at > datetime.now(UTC) + timedelta(hours=23)
    assert subscription_store.for_user(stack.runtime.db, user_id) is None and user.subscription_missing_since is None
    assert mailbox_requests(stack, user_id) == requests_then          # nothing more until the daily check
    assert status_events(stack, user_id)[-1] == ("cannot_sync", STATES[state], "connected")
    page = session.get(f"{stack.url}/connections/me", timeout=10).text
    assert "Cannot sync" in page and "cannot sync: " in page
    listed = stack.client.get("/ops/api/users?status=cannot_sync", headers=ops_headers).get_json()
    assert [(u["user_id"], u["reason"]) for u in listed["users"]] == [(user_id, STATES[state])]


def test_no_exchange_mailbox_reads_so_on_the_page_and_in_the_ops_view(stack, outbound, ops_headers):
    person = emulated_user(stack, mail="guest@contoso.com")
    stack.emulator.control.set_mailbox(person["id"], "guest")

    user_id, session = connect_session(stack, person["id"])
    stack.run_jobs()

    status = session.get(f"{stack.url}/connections/me", headers={"Accept": "application/json"}, timeout=10).json()
    assert status["status"] == "cannot_sync" and status["reason_text"] == "cannot sync: no Exchange Online mailbox"
    health = stack.client.get("/ops/api/health", headers=ops_headers).get_json()
    assert [u["reason_text"] for u in health["cannot_sync"]] == ["cannot sync: no Exchange Online mailbox"]
    assert "cannot sync: no Exchange Online mailbox" in stack.client.get("/ops/", headers=ops_headers).text
    bad = stack.client.get("/ops/api/users?status=sleeping", headers=ops_headers)
    assert bad.status_code == 400


def test_a_mailbox_that_appears_is_checked_daily_and_syncs_on_its_own(stack, outbound):
    control, db = stack.emulator.control, stack.runtime.db
    person = emulated_user(stack, mail="late@contoso.com")
    control.create_event(person["id"], body("Kickoff"))
    control.set_mailbox(person["id"], "no_license")
    user_id, _ = connect_session(stack, person["id"])
    stack.run_jobs()
    control.set_mailbox(person["id"], "ok")                 # the licence arrives

    run_every_sweep(stack)                                  # not yet: the next check is a day away
    assert users.get(db, user_id).connection.status == "cannot_sync"
    db.users.update_one({"_id": user_id}, {"$set": {"connection.next_check_at": datetime.now(UTC)}})
    run_every_sweep(stack)

    assert users.get(db, user_id).connection.status == "connected"
    assert subscription_store.for_user(db, user_id).immutable_ids
    assert {e["subject"] for e in db.events.find({"user_id": user_id})} == {"Kickoff"}
    assert status_events(stack, user_id)[-2:] == [("cannot_sync", "no_exchange_mailbox", "connected"),
                                                  ("connected", "mailbox_available", "cannot_sync")]


def test_a_connected_user_whose_licence_goes_stops_syncing_without_retries(stack, outbound):
    control, db = stack.emulator.control, stack.runtime.db
    person = emulated_user(stack, mail="leaver@contoso.com")
    user_id, _ = connect_session(stack, person["id"])
    stack.run_jobs()
    control.set_mailbox(person["id"], "no_license")

    jobs.sync_user(user_id)

    user = users.get(db, user_id)
    assert (user.connection.status, user.connection.reason) == ("cannot_sync", "no_exchange_mailbox")
    assert user.sync.last_result == "cannot_sync"
    assert status_events(stack, user_id)[-1] == ("cannot_sync", "no_exchange_mailbox", "connected")


@pytest.mark.parametrize(("status", "code", "wide", "reason"), [
    (404, "MailboxNotEnabledForRESTAPI", False, "no_exchange_mailbox"),
    (404, "ErrorMailboxNotEnabledForRESTAPI", False, "no_exchange_mailbox"),
    (404, "MailboxNotSupportedForRESTAPI", False, "no_exchange_mailbox"),
    (404, "ErrorInvalidUser", True, "mailbox_not_found"),
    (404, "ErrorInvalidUser", False, None),           # one calendar's answer says nothing of the mailbox
    (403, "ErrorAccessDenied", True, "mailbox_access_denied"),
    (403, "ErrorAccessDenied", False, None),          # a calendar shared without the right to read it
    (404, "ErrorItemNotFound", True, None),
    (429, "TooManyRequests", True, None),
])
def test_which_graph_errors_mean_the_mailbox_cannot_be_read(status, code, wide, reason):
    assert mailbox_unavailable(GraphError(status, code), mailbox_wide=wide) == reason
