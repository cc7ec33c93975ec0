"""Signed deliveries to a real receiver on loopback, verified with the standardwebhooks library; retries,
back-off, giving up, pausing, replays, and receivers that misbehave."""

from __future__ import annotations

import json
import logging
import os
import shlex
import ssl
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from emulator.tls import make_tls_files
from service import outbox
from service.outbound import delivery, endpoints
from service.runtime import Runtime
from service.store import outbound as store
from service.store import utcnow
from tests.support.processes import ROOT, procfile_command
from tests.support.receiver import running_receiver


def emit(rt, user_id="user-1", **data):
    return outbox.emit(rt.db, rt.redis, outbox.MEETING_PREP_DUE, user_id, data or {"meeting_id": "m1"})


def only_delivery(rt):
    (row,) = list(rt.db.outbound_deliveries.find({}))
    return row


def attempt(rt, now=None):
    return delivery.attempt(rt.db, rt.redis, rt.settings, rt.ssl_context, only_delivery(rt)["_id"], now)


def test_a_delivery_through_a_real_worker_is_signed_as_the_standard_says(rt, endpoint, receiver, run_jobs):
    endpoint_id, secret = endpoint

    event_id = outbox.prep_due(rt.db, rt.redis, "user-1", "AAMk-1", utcnow() + timedelta(minutes=15),
                               ["Ben@Contoso.com", "ben@contoso.com", "cy@contoso.com"])
    run_jobs()

    (got,) = receiver.wait_for(1)
    payload = Webhook(secret).verify(got.body, got.headers)
    assert secret.startswith("whsec_") and got.headers["webhook-id"] == event_id
    assert got.headers["content-type"] == "application/json" and got.path == "/hooks/calsync"
    assert payload["type"] == "meeting.prep_due" and payload["user_id"] == "user-1" and payload["sequence"] == 1
    assert payload["data"]["meeting_id"] == "AAMk-1"
    assert payload["data"]["matched_attendees"] == ["ben@contoso.com", "cy@contoso.com"]
    assert only_delivery(rt)["status"] == "delivered"
    (logged,) = store.get_endpoint(rt.db, endpoint_id).attempts
    assert logged["status"] == 204 and logged["ok"] and logged["duration_ms"] >= 0 and logged["error"] is None


def test_a_tampered_body_and_a_replayed_old_timestamp_are_rejected_by_the_receiver(rt, endpoint, receiver):
    _, secret = endpoint
    emit(rt)
    rt.db.outbound_deliveries.update_one({}, {"$set": {"next_attempt_at": utcnow() - timedelta(hours=1)}})

    attempt(rt, now=utcnow() - timedelta(minutes=10))     # a capture of a delivery ten minutes old, sent again
    (old,) = receiver.wait_for(1)

    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(old.body, old.headers)
    fresh = {**old.headers, "webhook-timestamp": str(int(time.time()))}   # a new timestamp needs a new signature
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(old.body, fresh)
    tampered = json.loads(old.body) | {"user_id": "someone-else"}
    rt.db.outbound_deliveries.update_one({}, {"$set": {"next_attempt_at": utcnow(), "status": "pending"}})
    attempt(rt)
    (_, now_signed) = receiver.wait_for(2)
    assert Webhook(secret).verify(now_signed.body, now_signed.headers)["user_id"] == "user-1"
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(json.dumps(tampered), now_signed.headers)


def test_no_endpoint_no_outbox(rt):
    assert emit(rt) is None
    assert rt.db.outbound_events.count_documents({}) == 0


def test_only_endpoints_subscribed_to_a_type_get_it_and_sequences_grow_per_user(rt, client, ops_headers, receiver):
    client.post("/ops/api/webhooks", headers=ops_headers, json={"url": receiver.url, "event_types": ["digest.sent"]})

    assert emit(rt) is None
    first = outbox.digest_sent(rt.db, rt.redis, "u1", "2026-07-01", utcnow(), 3)
    second = outbox.digest_sent(rt.db, rt.redis, "u1", "2026-07-02", utcnow(), 0)
    other = outbox.digest_sent(rt.db, rt.redis, "u2", "2026-07-02", utcnow(), 1)

    sequences = {e["_id"]: (e["user_id"], e["sequence"]) for e in rt.db.outbound_events.find({})}
    assert sequences == {first: ("u1", 1), second: ("u1", 2), other: ("u2", 1)}


def test_the_secret_is_shown_once_and_stored_encrypted(rt, client, ops_headers, endpoint):
    endpoint_id, secret = endpoint

    shown = client.get(f"/ops/api/webhooks/{endpoint_id}", headers=ops_headers)
    listed = client.get("/ops/api/webhooks", headers=ops_headers)

    assert shown.status_code == 200 and listed.status_code == 200
    assert secret not in shown.get_data(as_text=True) and secret not in listed.get_data(as_text=True)
    stored = json.dumps(rt.db.outbound_endpoints.find_one({"_id": endpoint_id}), default=str)
    assert secret not in stored and secret[len("whsec_"):] not in stored


def test_a_rotated_secret_signs_beside_the_old_one_for_24_hours(rt, client, ops_headers, endpoint, receiver):
    endpoint_id, old_secret = endpoint
    rotated = client.post(f"/ops/api/webhooks/{endpoint_id}/rotate-secret", headers=ops_headers)
    new_secret = rotated.get_json()["secret"]
    emit(rt)

    attempt(rt)
    (got,) = receiver.wait_for(1)
    rt.db.outbound_deliveries.update_one({}, {"$set": {"status": "pending", "next_attempt_at": utcnow()}})
    later = utcnow() + timedelta(hours=24, minutes=1)
    rt.db.outbound_deliveries.update_one({}, {"$set": {"next_attempt_at": later, "retry_until": later + timedelta(1)}})
    attempt(rt, now=later)
    (_, after_a_day) = receiver.wait_for(2)

    assert rotated.status_code == 200 and new_secret != old_secret
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new_secret).verify(got.body, got.headers) and Webhook(old_secret).verify(got.body, got.headers)
    assert len(after_a_day.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret).verify(after_a_day.body, after_a_day.headers)   # its timestamp is a day ahead
    assert after_a_day.headers["webhook-signature"].startswith("v1,")


def test_failures_are_retried_with_backoff_and_logged_until_a_2xx(rt, endpoint, receiver):
    endpoint_id, secret = endpoint
    receiver.statuses = [500, 503]
    emit(rt)
    start = utcnow()

    first = attempt(rt, now=start)
    too_early = attempt(rt, now=start + timedelta(seconds=5))
    waits = []
    now = start
    for _ in range(2):
        now = only_delivery(rt)["next_attempt_at"]
        waits.append(now)
        outcome = attempt(rt, now=now)

    assert (first, too_early, outcome) == ("failed:500", "not-due", "delivered")
    gaps = [(waits[0] - start).total_seconds(), (waits[1] - waits[0]).total_seconds()]
    assert 22 <= gaps[0] <= 38 and 45 <= gaps[1] <= 75                    # 30 s, then 60 s, ±25%
    ids = {r.headers["webhook-id"] for r in receiver.wait_for(3)}
    assert len(ids) == 1                                                    # the same message each time
    log = store.get_endpoint(rt.db, endpoint_id).attempts
    assert [(a["attempt"], a["status"], a["ok"]) for a in log] == [(1, 500, False), (2, 503, False), (3, 204, True)]
    assert log[0]["error"] == "HTTP 500" and store.get_endpoint(rt.db, endpoint_id).failing_since is None


def test_backoff_doubles_with_jitter_and_is_capped():
    import random

    rng = random.Random(7)
    delays = [delivery.backoff(n, rng) for n in range(1, 16)]

    assert all(0.75 * min(30 * 2 ** (n - 1), 14400) <= d <= 1.25 * min(30 * 2 ** (n - 1), 14400)
               for n, d in zip(range(1, 16), delays, strict=True))
    assert len({round(d) for d in delays[-4:]}) == 4        # jittered, not in lockstep


def test_a_delivery_is_given_up_after_24_hours_and_a_3_day_failure_pauses_the_endpoint(rt, endpoint, receiver):
    endpoint_id, _ = endpoint
    receiver.statuses = [500] * 50
    emit(rt)
    start = utcnow()

    attempts, now = 0, start
    while only_delivery(rt)["status"] == "pending" and attempts < 40:
        now = max(only_delivery(rt)["next_attempt_at"], now)
        attempt(rt, now=now)
        attempts += 1
    gave_up = only_delivery(rt)
    emit(rt, user_id="user-2")
    later = start + timedelta(days=3, minutes=1)
    rt.db.outbound_deliveries.update_one({"status": "pending"}, {"$set": {"next_attempt_at": later,
                                                                          "retry_until": later + timedelta(1)}})
    pending = rt.db.outbound_deliveries.find_one({"status": "pending"})
    delivery.attempt(rt.db, rt.redis, rt.settings, rt.ssl_context, pending["_id"], later)
    paused = store.get_endpoint(rt.db, endpoint_id)

    assert gave_up["status"] == "failed" and 8 <= gave_up["attempts"] <= 20
    assert (now - start) < timedelta(hours=24)
    assert paused.status == "paused" and paused.paused_reason == "failing for 3 days"
    assert emit(rt, user_id="user-3") is not None                       # still recorded, for a replay
    assert rt.db.outbound_deliveries.count_documents({"user_id": "user-3"}) == 0


def test_a_slow_receiver_times_out_and_an_enormous_answer_is_not_read(rt, endpoint, receiver):
    endpoint_id, _ = endpoint
    receiver.delay = 3.0
    emit(rt)

    started = time.monotonic()
    slow = attempt(rt)
    slow_seconds = time.monotonic() - started
    receiver.delay, receiver.huge_body = 0.0, 50_000_000
    started = time.monotonic()
    huge = attempt(rt, now=only_delivery(rt)["next_attempt_at"])
    huge_seconds = time.monotonic() - started

    assert slow == "failed" and slow_seconds < 2.5
    assert huge == "delivered" and huge_seconds < 2
    log = store.get_endpoint(rt.db, endpoint_id).attempts
    assert log[0]["error"] == "timed out after 1 s" and 900 <= log[0]["duration_ms"] < 2500


def test_a_receiver_that_does_not_speak_http_fails_cleanly(rt, endpoint, receiver):
    endpoint_id, _ = endpoint
    receiver.garbage = 1_000_000
    emit(rt)

    assert attempt(rt) == "failed"
    (logged,) = store.get_endpoint(rt.db, endpoint_id).attempts
    assert "4 KB" in logged["error"]


def test_replay_one_delivery_and_a_time_range(rt, client, ops_headers, endpoint, receiver, run_jobs):
    endpoint_id, secret = endpoint
    client.post(f"/ops/api/webhooks/{endpoint_id}/pause", headers=ops_headers)
    missed = [emit(rt, user_id=f"u{n}") for n in range(3)]      # paused: recorded, not sent
    client.post(f"/ops/api/webhooks/{endpoint_id}/resume", headers=ops_headers)
    delivered = emit(rt, user_id="u9")
    run_jobs()
    assert [r.headers["webhook-id"] for r in receiver.wait_for(1)] == [delivered]
    one = store.delivery_for(rt.db, endpoint_id, delivered)["_id"]

    again = client.post(f"/ops/api/webhooks/{endpoint_id}/replay", headers=ops_headers, json={"delivery_id": one})
    run_jobs()
    start = (utcnow() - timedelta(minutes=5)).isoformat()
    ranged = client.post(f"/ops/api/webhooks/{endpoint_id}/replay", headers=ops_headers,
                         json={"since": start, "until": (utcnow() + timedelta(seconds=1)).isoformat()})
    run_jobs()

    assert again.status_code == 202 and ranged.status_code == 202 and ranged.get_json()["queued"] == 4
    got = receiver.wait_for(6)
    assert [r.headers["webhook-id"] for r in got[:2]] == [delivered, delivered]
    assert sorted(r.headers["webhook-id"] for r in got[2:]) == sorted([*missed, delivered])
    assert all(Webhook(secret).verify(r.body, r.headers) for r in got)


def test_the_sweep_sends_deliveries_whose_job_was_lost(rt, endpoint, receiver, redis_conn, run_jobs):
    emit(rt)
    redis_conn.flushdb()                                        # Redis lost the queued job
    rt.db.outbound_deliveries.update_one({}, {"$set": {"next_attempt_at": utcnow() - timedelta(minutes=2)}})

    assert delivery.sweep(rt.db, rt.redis) == {"paused": 0, "queued": 1}
    run_jobs()

    assert len(receiver.wait_for(1)) == 1 and only_delivery(rt)["status"] == "delivered"


def test_a_claimed_delivery_is_not_sent_twice(rt, endpoint, receiver):
    emit(rt)
    row = only_delivery(rt)

    first = store.claim(rt.db, row["_id"], utcnow(), timedelta(seconds=30))
    second = store.claim(rt.db, row["_id"], utcnow(), timedelta(seconds=30))

    assert first is not None and second is None


@pytest.mark.wire
def test_the_procfile_worker_process_delivers_from_the_outbox(rt, endpoint, receiver, redis_url, mongodb_uri):
    """The Procfile's own worker line, as a separate process sharing MongoDB and Redis, attempts the delivery."""
    _, secret = endpoint
    event_id = emit(rt)
    argv = shlex.split(procfile_command("worker").replace('"$REDIS_URL"', redis_url)) + ["--burst"]
    argv[0] = str(Path(sys.executable).with_name("rq"))
    env = {**os.environ, "REDIS_URL": redis_url, "MONGODB_URI": mongodb_uri, "CALSYNC_OUTBOUND_ALLOW_PRIVATE": "1",
           "CALSYNC_DATA_DIR": rt.settings.data_dir}

    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    (got,) = receiver.wait_for(1)
    assert Webhook(secret).verify(got.body, got.headers)["id"] == event_id
    assert only_delivery(rt)["status"] == "delivered"
    assert secret not in result.stdout + result.stderr


def test_while_an_endpoint_is_failing_one_delivery_probes_it_and_the_others_wait(rt, endpoint, receiver):
    endpoint_id, _ = endpoint
    receiver.delay = 3.0                                      # times out (1 s here)
    for n in range(5):
        emit(rt, user_id=f"u{n}")
    rows = list(rt.db.outbound_deliveries.find({}).sort("created_at", 1))
    now = utcnow()

    first = delivery.attempt(rt.db, rt.redis, rt.settings, rt.ssl_context, rows[0]["_id"], now)
    others = [delivery.attempt(rt.db, rt.redis, rt.settings, rt.ssl_context, r["_id"], now) for r in rows[1:]]
    hold = store.get_endpoint(rt.db, endpoint_id).hold_until
    held_attempts = [r["attempts"] for r in rt.db.outbound_deliveries.find({"_id": {"$ne": rows[0]["_id"]}})]
    receiver.delay = 0.0
    probe_at = max(r["next_attempt_at"] for r in rt.db.outbound_deliveries.find({}))
    probe = delivery.attempt(rt.db, rt.redis, rt.settings, rt.ssl_context, rows[1]["_id"], probe_at)
    rest = [delivery.attempt(rt.db, rt.redis, rt.settings, rt.ssl_context, r["_id"], probe_at) for r in rows[2:]]

    assert first == "failed" and others == ["held"] * 4
    assert len(receiver.requests) == 5                        # one timed-out attempt, then the four after recovery
    assert 20 <= (hold - now).total_seconds() <= 40 and held_attempts == [0] * 4      # waiting is no attempt
    assert probe == "delivered" and rest == ["delivered"] * 3
    assert store.get_endpoint(rt.db, endpoint_id).hold_until is None


def test_secrets_never_reach_the_logs(rt, client, ops_headers, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    created = client.post("/ops/api/webhooks", headers=ops_headers, json={"url": receiver.url}).get_json()
    endpoint_id = created["endpoint"]["id"]
    rotated = client.post(f"/ops/api/webhooks/{endpoint_id}/rotate-secret", headers=ops_headers).get_json()
    receiver.statuses = [500]
    emit(rt)
    first = attempt(rt)
    second = attempt(rt, now=only_delivery(rt)["next_attempt_at"])

    assert (first, second) == ("failed:500", "delivered")
    for secret in (created["secret"], rotated["secret"]):
        assert secret[len("whsec_"):] not in caplog.text
    signatures = [r.headers["webhook-signature"] for r in receiver.requests]
    assert not any(part.split(",")[1] in caplog.text for value in signatures for part in value.split(" "))


def test_https_receivers_are_verified_against_the_trusted_cas(make_settings, db, redis_conn, tmp_path):
    files = make_tls_files(tmp_path / "tls")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(files.cert_pem, files.key_pem)
    trusting = Runtime(make_settings(outbound_allow_private=True, outbound_timeout=2.0, ca_bundle=str(files.ca_pem)),
                       db=db, redis_conn=redis_conn)
    not_trusting = Runtime(make_settings(outbound_allow_private=True, outbound_timeout=2.0), db=db,
                           redis_conn=redis_conn)
    with running_receiver(tls=server_side) as receiver:
        created = endpoints.register(db, trusting.settings, receiver.url, ["digest.sent"])
        outbox.digest_sent(db, redis_conn, "u1", "2026-07-01", utcnow(), 1)
        row = db.outbound_deliveries.find_one({})

        refused = delivery.attempt(db, redis_conn, not_trusting.settings, not_trusting.ssl_context, row["_id"])
        db.outbound_endpoints.update_one({}, {"$set": {"hold_until": None}})
        db.outbound_deliveries.update_one({}, {"$set": {"next_attempt_at": utcnow()}})
        delivered = delivery.attempt(db, redis_conn, trusting.settings, trusting.ssl_context, row["_id"])
        (got,) = receiver.wait_for(1)

    assert refused == "failed" and delivered == "delivered"
    assert "CERTIFICATE_VERIFY_FAILED" in store.get_endpoint(db, created.endpoint.id).attempts[0]["error"]
    assert receiver.url.startswith("https://") and Webhook(created.secret).verify(got.body, got.headers)
