"""The webhook routes against real Redis: handshake, limits, verification, coalescing, 5xx when Redis is down."""

from __future__ import annotations

import json
import logging

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue

from service import queues
from service.app import create_app
from service.runtime import Runtime
from service.store import subscriptions as store
from service.store import users
from service.subscriptions import mirror as cache
from service.sync import dispatch
from service.workers import jobs as worker_jobs
from tests.support.notifications import STATE_A, STATE_B, SUB_A, SUB_B, change, subscribe


def post(client, items, path="/webhooks/graph"):
    return client.post(path, data=json.dumps({"value": items}), content_type="application/json")


def sync_jobs(conn) -> list[tuple[str, tuple]]:
    """The sync queue's jobs once the dispatcher has moved the webhook's requests onto it."""
    dispatch.drain(conn)
    return [(job.func_name, job.args) for job in Queue("sync", connection=conn).jobs]


@pytest.fixture
def two_users(db):
    subscribe(db, SUB_A, "user-a", STATE_A)
    subscribe(db, SUB_B, "user-b", STATE_B)


# --- handshake -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/webhooks/graph", "/webhooks/graph/lifecycle"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_handshake_echoes_the_decoded_token_as_plain_text(client, path, method):
    token = "Validation: Testing client application reachability <script>alert(1)</script> & more"
    response = client.open(path, method=method, query_string={"validationToken": token},
                           data=b"ignored", content_type="text/plain; charset=utf-8")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == token
    assert response.mimetype == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_get_without_a_token_is_a_bad_request(client):
    assert client.get("/webhooks/graph").status_code == 400


# --- size and shape --------------------------------------------------------------------------------

def test_body_over_the_limit_is_413_and_never_logged(make_settings, db, redis_conn, caplog):
    rt = Runtime(make_settings(max_notification_bytes=300), db=db, redis_conn=redis_conn)
    client = create_app(runtime=rt).test_client()
    caplog.set_level(logging.DEBUG)
    secret_marker = "SECRET-BODY-MARKER"
    response = post(client, [change(SUB_A, secret_marker + "z" * 400)])
    assert response.status_code == 413
    assert secret_marker not in caplog.text


@pytest.mark.parametrize("body", [b"{not json", b'{"value": 3}', b"[]"])
def test_malformed_bodies_are_400_and_never_logged(client, caplog, body):
    caplog.set_level(logging.DEBUG)
    response = client.post("/webhooks/graph", data=body + b" MARKER", content_type="application/json")
    assert response.status_code == 400
    assert "MARKER" not in caplog.text


# --- verification and queuing ----------------------------------------------------------------------

def test_a_burst_for_one_mailbox_becomes_one_sync(client, redis_conn, two_users):
    batch = [change(SUB_A, STATE_A, f"e{i}") for i in range(5)] + [change(SUB_A, STATE_A, "e1")]
    assert post(client, batch).status_code == 202
    assert post(client, list(reversed(batch))).status_code == 202  # redelivered, reordered
    assert sync_jobs(redis_conn).count((queues.SYNC_USER, ("user-a",))) == 1
    assert redis_conn.get("calsync:dirty:user-a") is not None
    assert int(redis_conn.get("calsync:stats:webhook:accepted")) == 12


def test_a_batch_across_mailboxes_queues_one_sync_each(client, redis_conn, two_users):
    assert post(client, [change(SUB_A, STATE_A), change(SUB_B, STATE_B), change(SUB_A, STATE_A)]).status_code == 202
    syncs = [args for name, args in sync_jobs(redis_conn) if name == queues.SYNC_USER]
    assert sorted(syncs) == [("user-a",), ("user-b",)]


def test_wrong_client_state_and_unknown_subscriptions_are_dropped_and_counted(client, redis_conn, two_users):
    items = [change(SUB_A, STATE_B), change(SUB_A, None), change("33333333-0000-4000-8000-000000000003", STATE_A)]
    assert post(client, items).status_code == 202
    assert not any(name.endswith("sync_user") for name, _ in sync_jobs(redis_conn))
    assert int(redis_conn.get("calsync:stats:webhook:dropped:client_state")) == 2
    assert int(redis_conn.get("calsync:stats:webhook:dropped:unknown_subscription")) == 1
    assert redis_conn.get("calsync:dirty:user-a") is None


def test_lookups_are_served_from_redis_after_the_first_miss(client, redis_conn, db, two_users):
    assert redis_conn.exists(cache.key(SUB_A)) == 0
    assert post(client, [change(SUB_A, STATE_A)]).status_code == 202
    assert redis_conn.hget(cache.key(SUB_A), "u") == b"user-a"
    assert redis_conn.hget(cache.key(SUB_A), "c") != STATE_A.encode()  # only a digest is mirrored
    assert sync_jobs(redis_conn).count((queues.SYNC_USER, ("user-a",))) == 1
    db.subscriptions.delete_many({})  # MongoDB no longer consulted for this id
    redis_conn.delete("calsync:sync-pending:user-a")
    assert post(client, [change(SUB_A, STATE_A)]).status_code == 202
    assert sync_jobs(redis_conn).count((queues.SYNC_USER, ("user-a",))) == 2


def test_unknown_ids_are_remembered_briefly(client, redis_conn, db):
    unknown = "44444444-0000-4000-8000-000000000004"
    post(client, [change(unknown, "x")])
    assert redis_conn.hget(cache.key(unknown), "u") == b""
    assert 0 < redis_conn.ttl(cache.key(unknown)) <= cache.UNKNOWN_TTL


def test_last_notification_is_stamped_off_the_request_path_once_a_minute(client, redis_conn, db, rt, two_users):
    db.users.insert_one({"_id": "user-a", "connection": {"status": users.CONNECTED}, "sync": {}})
    post(client, [change(SUB_A, STATE_A)])
    post(client, [change(SUB_A, STATE_A)])
    dispatch.drain(redis_conn)
    stamps = [job for job in Queue("sync", connection=redis_conn).jobs
              if job.func_name == queues.RECORD_NOTIFICATION]
    assert len(stamps) == 1
    assert db.users.find_one({"_id": "user-a"})["sync"] == {}  # nothing written by the request itself
    worker_jobs.record_notification(*stamps[0].args)
    assert db.users.find_one({"_id": "user-a"})["sync"]["last_notification_at"] is not None
    assert store.get(db, SUB_A).last_notification_at is not None


def test_redis_down_is_a_5xx_so_graph_redelivers(make_settings, db):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))
    rt = Runtime(make_settings(), db=db, redis_conn=dead)
    subscribe(db, SUB_A, "user-a", STATE_A)
    client = create_app(runtime=rt).test_client()
    response = post(client, [change(SUB_A, STATE_A)])
    assert response.status_code == 503 and response.headers["Retry-After"]
    lifecycle = post(client, [lifecycle_item(SUB_A, STATE_A, "reauthorizationRequired")], "/webhooks/graph/lifecycle")
    assert lifecycle.status_code == 503 and lifecycle.headers["Retry-After"]   # verified in Redis: Graph retries
    lifecycle = [{"subscriptionId": SUB_A, "clientState": STATE_A, "lifecycleEvent": "missed", "tenantId": "t1"}]
    assert post(client, lifecycle, "/webhooks/graph/lifecycle").status_code == 503


# --- lifecycle ------------------------------------------------------------------------------------

def lifecycle_item(subscription_id: str, state: str, event: str) -> dict:
    return {"subscriptionId": subscription_id, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "tenantId": "t1", "clientState": state, "lifecycleEvent": event}


def test_lifecycle_events_queue_one_job_per_subscription_and_event(client, redis_conn, two_users):
    items = [lifecycle_item(SUB_A, STATE_A, "reauthorizationRequired")] * 3 + [
        lifecycle_item(SUB_B, STATE_B, "subscriptionRemoved"), lifecycle_item(SUB_B, "forged", "missed")]
    assert post(client, items, "/webhooks/graph/lifecycle").status_code == 202
    assert post(client, items[:1], "/webhooks/graph/lifecycle").status_code == 202  # still pending: no second job
    jobs = [(job.func_name, job.args) for job in Queue("subscriptions", connection=redis_conn).jobs]
    assert sorted(jobs) == [
        (queues.HANDLE_LIFECYCLE, (SUB_A, "reauthorizationRequired")),
        (queues.HANDLE_LIFECYCLE, (SUB_B, "subscriptionRemoved")),
    ]
    assert int(redis_conn.get("calsync:stats:webhook:dropped:client_state")) == 1


def test_missed_asks_for_a_sync_directly(client, redis_conn, two_users):
    assert post(client, [lifecycle_item(SUB_A, STATE_A, "missed")], "/webhooks/graph/lifecycle").status_code == 202
    assert (queues.SYNC_USER, ("user-a",)) in sync_jobs(redis_conn)
