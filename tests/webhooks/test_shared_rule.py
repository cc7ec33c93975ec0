"""The webhook (changes and lifecycle), request_sync and the dispatcher share one rule (service/sync/rule.lua):
a guard left by one path is honoured by the others, a stale one is taken over by each alike, and both routes
verify clientState the same way, in the same script."""

from __future__ import annotations

import hashlib
import json

import pytest
from rq import Queue
from rq.job import Job

from service import queues
from service.sync import dispatch, requests
from service.webhooks import receiver
from service.webhooks.notifications import CLIENT_STATE, UNKNOWN_SUBSCRIPTION, parse_collection
from tests.support.notifications import STATE_A, STATE_B, SUB_A, SUB_B, change, subscribe

LIFECYCLE_PATH = "/webhooks/graph/lifecycle"


@pytest.fixture
def two_users(db):
    subscribe(db, SUB_A, "user-a", STATE_A)
    subscribe(db, SUB_B, "user-b", STATE_B)


def post(client, items, path="/webhooks/graph"):
    return client.post(path, data=json.dumps({"value": items}), content_type="application/json")


def lifecycle(subscription_id: str, state: str | None, event: str = "missed") -> dict:
    return {"subscriptionId": subscription_id, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "tenantId": "t1", "clientState": state, "lifecycleEvent": event}


def guard(conn, user: str) -> str | None:
    value = conn.get(requests.PENDING_KEY.format(user_id=user))
    return value.decode() if value is not None else None


def sync_job_ids(conn, user: str) -> list[str]:
    return [job.id for job in Queue(queues.SYNC, connection=conn).jobs
            if job.func_name == queues.SYNC_USER and job.args == (user,)]


def stream_syncs(conn) -> list[str]:
    return [fields[b"u"].decode() for _, fields in conn.xrange(dispatch.STREAM) if fields[b"k"] == b"sync"]


# --- a guard left by one path is honoured by the others ---------------------------------------------

def test_the_webhooks_guard_holds_off_request_sync_and_the_dispatcher_names_its_job(client, redis_conn, two_users):
    assert post(client, [change(SUB_A, STATE_A)]).status_code == 202
    assert guard(redis_conn, "user-a") == requests.AWAITING_DISPATCH

    assert requests.request_sync(redis_conn, "user-a", "connect") is False      # awaiting dispatch: live
    assert redis_conn.get(requests.DIRTY_KEY.format(user_id="user-a")) == b"connect"
    dispatch.drain(redis_conn)
    (job_id,) = sync_job_ids(redis_conn, "user-a")
    assert guard(redis_conn, "user-a") == job_id                                # named by the dispatcher
    assert requests.request_sync(redis_conn, "user-a", "connect") is False      # its job is queued: live
    assert sync_job_ids(redis_conn, "user-a") == [job_id]


def test_request_syncs_guard_holds_off_both_routes_until_its_job_is_over(client, redis_conn, two_users):
    assert requests.request_sync(redis_conn, "user-a", "connect") is True
    (job_id,) = sync_job_ids(redis_conn, "user-a")

    assert post(client, [change(SUB_A, STATE_A)]).status_code == 202
    assert post(client, [lifecycle(SUB_A, STATE_A)], LIFECYCLE_PATH).status_code == 202
    assert stream_syncs(redis_conn) == [] and guard(redis_conn, "user-a") == job_id
    assert sync_job_ids(redis_conn, "user-a") == [job_id]

    Job.fetch(job_id, connection=redis_conn).set_status("failed")               # over: the guard is stale
    assert post(client, [change(SUB_A, STATE_A)]).status_code == 202
    assert stream_syncs(redis_conn) == ["user-a"] and guard(redis_conn, "user-a") == requests.AWAITING_DISPATCH


STALE = {"no such job": "0123456789abcdef", "a guard from before guards named jobs": "notification"}


@pytest.mark.parametrize("leftover", list(STALE.values()), ids=list(STALE))
@pytest.mark.parametrize("path", ["change", "lifecycle missed", "request_sync"])
def test_a_stale_guard_is_taken_over_by_every_path(client, redis_conn, two_users, path, leftover):
    redis_conn.set(requests.PENDING_KEY.format(user_id="user-a"), leftover, ex=3600)

    if path == "change":
        assert post(client, [change(SUB_A, STATE_A)]).status_code == 202
    elif path == "lifecycle missed":
        assert post(client, [lifecycle(SUB_A, STATE_A)], LIFECYCLE_PATH).status_code == 202
    else:
        assert requests.request_sync(redis_conn, "user-a", "connect") is True
    dispatch.drain(redis_conn)

    (job_id,) = sync_job_ids(redis_conn, "user-a")
    assert guard(redis_conn, "user-a") == job_id
    assert redis_conn.exists(requests.DIRTY_KEY.format(user_id="user-a"))


def test_the_dispatcher_leaves_a_guard_another_request_claimed_meanwhile(client, redis_conn, two_users):
    assert post(client, [change(SUB_A, STATE_A)]).status_code == 202   # awaiting dispatch
    requests.clear_pending(redis_conn, "user-a")                        # a sync started meanwhile...
    assert requests.request_sync(redis_conn, "user-a", "connect") is True   # ...and another was asked for
    (claimed,) = sync_job_ids(redis_conn, "user-a")

    dispatch.drain(redis_conn)

    assert guard(redis_conn, "user-a") == claimed       # not overwritten by the dispatcher's job


# --- one clientState check for both routes -----------------------------------------------------------

WRONG_STATES = {
    "another subscription's": STATE_B,
    "missing": None,
    "empty": "",
    "a prefix of ours": STATE_A[:-1],
    "ours with a trailing space": STATE_A + " ",
    "the SHA-256 hex of ours": hashlib.sha256(STATE_A.encode()).hexdigest(),
}


def outcome(client, redis_conn, path: str, items: list[dict]) -> dict:
    """What a POST left behind: its status, the counters, and whether user-a was asked to sync."""
    status = post(client, items, path).status_code
    dispatch.drain(redis_conn)
    counters = {key.decode().removeprefix(receiver.stat_key("")): int(redis_conn.get(key))
                for key in redis_conn.scan_iter(receiver.stat_key("dropped:*"))}
    return {"status": status, "dropped": counters, "dirty": bool(redis_conn.exists("calsync:dirty:user-a")),
            "syncs": len(sync_job_ids(redis_conn, "user-a"))}


@pytest.mark.parametrize("state", list(WRONG_STATES.values()), ids=list(WRONG_STATES))
def test_a_wrong_client_state_is_refused_identically_on_both_routes(client, redis_conn, two_users, state):
    on_changes = outcome(client, redis_conn, "/webhooks/graph", [change(SUB_A, state)])
    redis_conn.flushdb()
    on_lifecycle = outcome(client, redis_conn, LIFECYCLE_PATH, [lifecycle(SUB_A, state)])

    assert on_changes == on_lifecycle == {"status": 202, "dropped": {"dropped:client_state": 1}, "dirty": False,
                                          "syncs": 0}


def test_the_right_client_state_is_accepted_identically_on_both_routes(client, redis_conn, two_users):
    on_changes = outcome(client, redis_conn, "/webhooks/graph", [change(SUB_A, STATE_A)])
    redis_conn.flushdb()
    on_lifecycle = outcome(client, redis_conn, LIFECYCLE_PATH, [lifecycle(SUB_A, STATE_A)])

    assert on_changes == on_lifecycle == {"status": 202, "dropped": {}, "dirty": True, "syncs": 1}


@pytest.mark.parametrize("route", ["changes", "lifecycle"])
def test_both_routes_keep_matching_items_count_drops_by_reason_and_take_the_owner_from_our_record(
        redis_conn, db, two_users, route):
    make = change if route == "changes" else lambda sub, state: lifecycle(sub, state, "reauthorizationRequired")
    good = {**make(SUB_A, STATE_A), "resource": "Users/someone-else/Events/1", "tenantId": "other"}
    items = [good, good, make(SUB_A, "guess"), make(SUB_A, None), make("33333333-0000-4000-8000-000000000003", STATE_A)]
    collection = parse_collection(json.dumps({"value": items}).encode(), lifecycle=route == "lifecycle")
    receive = receiver.receive_changes if route == "changes" else receiver.receive_lifecycle

    verdict = receive(redis_conn, db, collection)

    assert len(verdict.accepted) == 2
    assert verdict.users == ["user-a"]
    assert verdict.dropped == {CLIENT_STATE: 2, UNKNOWN_SUBSCRIPTION: 1}
