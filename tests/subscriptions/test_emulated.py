"""Subscriptions and notifications end to end: calsync on loopback, the Graph emulator, real RQ jobs."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import requests
from rq import Queue
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from harness.waiting import wait_until
from service import queues
from service.graph import GraphError
from service.runtime import Runtime
from service.store import subscriptions as store
from service.subscriptions import mirror as cache
from service.subscriptions import sweep as jobs
from service.subscriptions.lifecycle import Outcome
from service.sync import dispatch
from service.workers import jobs as worker_jobs
from tests.support.connect import connect_user, emulated_user


def soon(hours: int = 1) -> tuple[str, str]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=hours)
    return start.strftime("%Y-%m-%dT%H:%M:%S"), (start + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")


def event_body(subject: str) -> dict:
    start, end = soon()
    return {"subject": subject, "start": {"dateTime": start, "timeZone": "UTC"},
            "end": {"dateTime": end, "timeZone": "UTC"}}


@pytest.fixture
def connected(stack):
    """A connected user whose initial jobs (subscription, first sync) have run."""
    user = emulated_user(stack, mail="alice@contoso.com")
    user_id = connect_user(stack, user["id"])
    stack.run_jobs()
    return user_id


def active_at_emulator(stack) -> list[dict]:
    return [s for s in stack.emulator.control.subscriptions() if s["status"] == "active"]


def stored_subjects(stack, user_id: str) -> set[str]:
    return {e["subject"] for e in stack.runtime.db.events.find({"user_id": user_id})}


def test_connect_creates_one_validated_subscription(stack, connected):
    document = store.for_user(stack.runtime.db, connected)
    assert document.status == "active" and not document.rich
    (remote,) = active_at_emulator(stack)
    assert remote["id"] == document.id
    assert remote["notificationUrl"] == f"{stack.url}/webhooks/graph"
    assert remote["lifecycleNotificationUrl"] == f"{stack.url}/webhooks/graph/lifecycle"
    assert remote["changeType"] == "created,updated,deleted"
    assert cache.client_state_digest(remote["clientState"]) == document.client_state_digest
    assert len(remote["clientState"]) <= 128
    assert "client_state" not in stack.runtime.db.subscriptions.find_one({"_id": document.id})   # only its digest
    validations = [d for d in stack.emulator.control.deliveries() if d.get("kind") == "validation"]
    assert validations and all(d["outcome"] == "ok" for d in validations)
    assert stack.runtime.redis.hget(cache.key(document.id), "u") == connected.encode()


def test_creating_again_replaces_and_never_duplicates(stack, connected):
    first = store.for_user(stack.runtime.db, connected)
    worker_jobs.ensure_subscription(connected)
    second = store.for_user(stack.runtime.db, connected)
    assert second.id != first.id and second.client_state_digest != first.client_state_digest
    assert [s["id"] for s in active_at_emulator(stack)] == [second.id]
    assert stack.runtime.db.subscriptions.count_documents({"user_id": connected}) == 1
    assert not stack.runtime.redis.exists(cache.key(first.id))


def test_an_endpoint_that_echoes_wrongly_fails_creation(stack, connected):
    def wrong_echo(environ, start_response):
        return Response("<html>hello</html>", mimetype="text/html")(environ, start_response)

    server = make_server("127.0.0.1", 0, wrong_echo, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        before = store.for_user(stack.runtime.db, connected)
        settings = stack.settings.with_overrides(public_url=f"http://127.0.0.1:{server.server_port}")
        rt = Runtime(settings, db=stack.runtime.db, redis_conn=stack.runtime.redis)
        with pytest.raises(GraphError) as failed:
            rt.subscriptions.create(connected)
        assert failed.value.status == 400
        kept = store.for_user(stack.runtime.db, connected)  # Graph allows one per resource: the old one went first
        assert kept.id == before.id and kept.status == "removed" and "400" in kept.last_error
        assert not active_at_emulator(stack)
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_notifications_reach_the_store_through_one_sync(stack, connected):
    control = stack.emulator.control
    control.set_faults(duplicate_rate=1.0, reorder_rate=0.5)
    created = [control.create_event(connected, event_body(f"Meeting {i}")) for i in range(4)]
    control.update_event(connected, created[0]["id"], {"subject": "Meeting 0 (moved)"})
    control.delete_event(connected, created[1]["id"])
    control.wait_idle(timeout=20)
    deliveries = control.deliveries("change")
    assert deliveries and all(d["status"] == 202 for d in deliveries if d["outcome"] in ("delivered", "duplicate"))
    assert any(d["outcome"] == "duplicate" for d in deliveries)
    assert sum(j.func_name.endswith("sync_user") for j in _queued(stack, "sync")) == 1
    stack.run_jobs()
    assert stored_subjects(stack, connected) == {"Meeting 0 (moved)", "Meeting 2", "Meeting 3"}
    assert stack.runtime.db.users.find_one({"_id": connected})["sync"]["last_notification_at"] is not None


def test_a_forged_client_state_is_dropped(stack, connected):
    document = store.for_user(stack.runtime.db, connected)
    forged = {"value": [{"subscriptionId": document.id, "clientState": "guessed", "changeType": "created",
                         "tenantId": document.tenant_id, "resource": "Users/x/Events/y",
                         "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z"}]}
    response = requests.post(f"{stack.url}/webhooks/graph", json=forged, timeout=5)
    assert response.status_code == 202
    assert int(stack.runtime.redis.get("calsync:stats:webhook:dropped:client_state")) == 1
    assert not _queued(stack, "sync")


def test_a_change_whose_notification_was_dropped_arrives_through_missed(stack, connected):
    control = stack.emulator.control
    control.clear_deliveries()
    control.set_faults(drop_rate=1.0)  # Graph drops the change notification, then sends `missed`

    control.create_event(connected, event_body("Quiet change"))
    control.wait_idle(timeout=20)
    control.clear_faults()
    waiting = Queue("sync", connection=stack.runtime.redis).jobs
    asked = [job.args for job in waiting if job.func_name == queues.SYNC_USER]
    stack.run_jobs()

    assert [d["outcome"] for d in control.deliveries("change")] == ["dropped"]
    assert [(d["outcome"], d["body"]["value"][0]["lifecycleEvent"]) for d in control.deliveries("lifecycle")] == [
        ("delivered", "missed")]
    assert asked == [(connected,)]  # the one sync asked for, and `missed` asked for it
    assert "Quiet change" in stored_subjects(stack, connected)


def test_subscription_removed_recreates_and_resyncs(stack, connected):
    old = store.for_user(stack.runtime.db, connected)
    stack.emulator.control.remove_subscription(old.id)
    stack.emulator.control.wait_idle(timeout=20)
    stack.run_jobs()
    new = store.for_user(stack.runtime.db, connected)
    assert new.id != old.id and new.status == "active"
    assert [s["id"] for s in active_at_emulator(stack)] == [new.id]
    stack.emulator.control.create_event(connected, event_body("After recreation"))
    stack.emulator.control.wait_idle(timeout=20)
    stack.run_jobs()
    assert "After recreation" in stored_subjects(stack, connected)


def test_a_subscription_whose_recreation_failed_is_repaired_by_the_sweep(stack, connected):
    old = store.for_user(stack.runtime.db, connected)
    stack.emulator.control.set_faults(rate_503=1.0, path_prefix="/subscriptions")   # Graph cannot create one now
    stack.emulator.control.remove_subscription(old.id)
    stack.emulator.control.wait_idle(timeout=20)
    stack.run_jobs()
    assert store.for_user(stack.runtime.db, connected).status == "removed"
    assert worker_jobs.renewal_sweep()["repaired"] == 0   # a fresh connect is left to its own job

    stack.emulator.control.clear_faults()
    later = (dt.datetime.now(dt.UTC) + jobs.REPAIR_AFTER + dt.timedelta(minutes=1)).isoformat()
    assert worker_jobs.renewal_sweep(later)["repaired"] == 1
    assert worker_jobs.renewal_sweep(later)["repaired"] == 0   # one attempt per user per 15 minutes
    stack.run_jobs()

    new = store.for_user(stack.runtime.db, connected)
    assert new.status == "active" and [s["id"] for s in active_at_emulator(stack)] == [new.id]


def test_reauthorization_required_renews_once_not_twice_within_ten_minutes(stack, connected):
    document = store.for_user(stack.runtime.db, connected)
    control = stack.emulator.control
    control.send_lifecycle(document.id, "reauthorizationRequired")
    control.wait_idle(timeout=20)
    stack.run_jobs()
    renewed = store.for_user(stack.runtime.db, connected)
    assert renewed.renewed_at is not None and renewed.reauthorized_at is None
    control.send_lifecycle(document.id, "reauthorizationRequired")
    control.wait_idle(timeout=20)
    stack.run_jobs()
    calls = [r for r in control.graph_requests() if "/subscriptions/" in r.get("path", "")]
    patches = [r for r in calls if r.get("method") == "PATCH"]
    reauths = [r for r in calls if r.get("path", "").endswith("/reauthorize")]
    assert len(patches) == 1 and not reauths


def test_changes_held_by_graph_for_an_expired_token_arrive_after_we_reauthorize(stack, connected):
    control = stack.emulator.control
    control.advance_clock(minutes=61)   # the access token the subscription was made with has expired
    control.create_event(connected, event_body("While the token was expired"))
    wait_until(lambda: "paused" in [d["outcome"] for d in control.deliveries("change")]
               and "delivered" in [d["outcome"] for d in control.deliveries("lifecycle")], timeout=20,
               message="the change held and the reauthorizationRequired delivered")

    stack.run_jobs()   # reauthorizationRequired: we renew with a refreshed token, which resumes delivery
    control.wait_idle(timeout=20)
    stack.run_jobs()

    assert "While the token was expired" in stored_subjects(stack, connected)
    assert [d["outcome"] for d in control.deliveries("change")][-2:] == ["paused", "delivered"]
    assert store.for_user(stack.runtime.db, connected).renewed_at is not None


def test_a_reauthorization_challenge_is_answered_with_a_fresh_token_so_deliveries_never_pause(stack, connected):
    control = stack.emulator.control
    control.advance_clock(minutes=46)   # the subscription's token has 14 minutes left: Graph challenges us
    wait_until(lambda: "delivered" in [d["outcome"] for d in control.deliveries("lifecycle")], timeout=20,
               message="the reauthorizationRequired challenge delivered")
    stack.run_jobs()   # we renew, handing Graph a freshly refreshed token rather than the cached one

    control.advance_clock(minutes=20)   # past the first token's expiry
    control.create_event(connected, event_body("After the first token expired"))
    control.wait_idle(timeout=20)
    stack.run_jobs()

    assert "After the first token expired" in stored_subjects(stack, connected)
    assert "paused" not in [d["outcome"] for d in control.deliveries("change")]


def test_renewal_after_a_404_recreates_and_resyncs(stack, connected):
    document = store.for_user(stack.runtime.db, connected)
    token = stack.emulator.control.token(user_id=connected)
    gone = requests.delete(f"{stack.emulator.graph_url}/subscriptions/{document.id}",
                           headers={"Authorization": f"Bearer {token}"}, verify=stack.emulator.ca_bundle, timeout=10)
    assert gone.status_code == 204
    assert stack.runtime.subscriptions.renew(document.id) == Outcome.RECREATED
    new = store.for_user(stack.runtime.db, connected)
    assert new.id != document.id
    assert [s["id"] for s in active_at_emulator(stack)] == [new.id]
    assert any(j.func_name.endswith("sync_user") for j in _queued(stack, "sync"))


def test_renewal_sweep_renews_due_subscriptions_and_skips_disconnected_users(stack, connected):
    db = stack.runtime.db
    document = store.for_user(db, connected)
    db.subscriptions.update_one({"_id": document.id},
                                {"$set": {"expires_at": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)}})
    counts = worker_jobs.renewal_sweep()
    assert counts["scheduled"] == 1
    assert worker_jobs.renewal_sweep()["scheduled"] == 0  # claimed: the next sweep does not schedule it again
    stack.run_jobs()
    renewed = store.for_user(db, connected)
    assert renewed.expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(days=6)
    assert renewed.next_attempt_at is None and renewed.failures == 0


def test_renewal_failures_back_off_and_are_visible(stack, connected):
    db = stack.runtime.db
    document = store.for_user(db, connected)
    stack.emulator.control.set_faults(script=[{"status": 500}], path_prefix="/subscriptions")
    outcome = stack.runtime.subscriptions.renew(document.id)
    stack.emulator.control.clear_faults()
    assert outcome == Outcome.FAILED
    failing = store.for_user(db, connected)
    assert failing.status == "failing" and failing.failures == 1 and "500" in failing.last_error
    assert failing.next_attempt_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4)
    db.subscriptions.update_one({"_id": document.id},
                                {"$set": {"expires_at": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)}})
    assert worker_jobs.renewal_sweep()["scheduled"] == 0  # backing off
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    assert worker_jobs.renewal_sweep(later.isoformat())["scheduled"] == 1


def test_disconnect_deletes_the_subscription(stack, connected):
    document = store.for_user(stack.runtime.db, connected)
    assert stack.runtime.subscriptions.delete_for_user(connected) is True
    assert store.for_user(stack.runtime.db, connected) is None
    assert not active_at_emulator(stack)
    assert not stack.runtime.redis.exists(cache.key(document.id))


def _queued(stack, name: str):
    if name == "sync":
        dispatch.drain(stack.runtime.redis)   # the webhook's requests, moved onto RQ as the dispatcher does
    return Queue(name, connection=stack.runtime.redis).jobs
