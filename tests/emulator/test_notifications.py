"""Change notifications: shape, batching, retries, delivery faults, Graph request faults and volume."""

from __future__ import annotations

from harness.waiting import wait_until
from tests.support.emulated import event_body, sub_body, subscribe


def test_notification_shape_and_batching(world, receiver, emu):
    sub = subscribe(world, receiver)
    uid = world.ada["id"]
    created = emu.control.create_event(uid, event_body("One", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.update_event(uid, created["id"], {"subject": "One!"})
    emu.control.delete_event(uid, created["id"])
    emu.control.wait_idle()
    posts = [p for p in receiver.posts if p["path"] == "/notify"]
    assert len(posts) == 1, "three quick changes go out in one POST"
    assert set(posts[0]["body"]) == {"value"}
    created_note, updated_note, deleted_note = posts[0]["body"]["value"]
    assert created_note == {
        "subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "changeType": "created", "resource": f"Users/{uid}/Events/{created['id']}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": f"Users/{uid}/Events/{created['id']}",
                         "@odata.etag": created["@odata.etag"], "id": created["id"]},
        "clientState": "s3cret", "tenantId": world.tenant["id"],
    }
    assert updated_note["changeType"] == "updated" and deleted_note["changeType"] == "deleted"
    assert "@odata.etag" not in deleted_note["resourceData"]
    (entry,) = [e for e in emu.control.deliveries("change")]
    assert entry["outcome"] == "delivered" and entry["status"] == 202 and entry["count"] == 3
    assert entry["url"] == f"{receiver.url}/notify?tenant=x" and entry["latency_ms"] >= 0


def test_only_matching_change_types_and_mailboxes_are_notified(world, receiver, emu):
    subscribe(world, receiver, changeType="deleted")
    event = emu.control.create_event(world.ada["id"], event_body("x", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.create_event(world.bob["id"], event_body("y", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.delete_event(world.ada["id"], event["id"])
    emu.control.wait_idle()
    assert [n["changeType"] for n in receiver.notifications("/notify")] == ["deleted"]


def test_failed_deliveries_are_retried_with_backoff(world, receiver, emu):
    subscribe(world, receiver)
    receiver.statuses = [500, 503]
    emu.control.create_event(world.ada["id"], event_body("x", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.wait_idle()
    log = emu.control.deliveries("change")
    assert [(e["outcome"], e["status"], e["attempt"]) for e in log] == [
        ("failed", 500, 0), ("failed", 503, 1), ("delivered", 202, 2)]
    assert len(receiver.notifications("/notify")) == 3


def test_slow_endpoint_times_out_and_is_retried(world, receiver, emu):
    subscribe(world, receiver)
    receiver.delay = 1.3  # longer than the (test-shortened) delivery timeout
    emu.control.create_event(world.ada["id"], event_body("x", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    receiver.wait_for(lambda: len(receiver.posts) >= 2)
    receiver.delay = 0
    emu.control.wait_idle(timeout=20)
    log = emu.control.deliveries("change")
    assert log[0]["outcome"] == "failed" and log[0]["error"] == "timeout"
    assert log[-1]["outcome"] == "delivered"


def test_giving_up_sends_missed(world, receiver, emu):
    sub = subscribe(world, receiver)
    receiver.default_status = 500
    # 600 s of simulated retrying, 0.6 s at this time scale: room for six back-offs (5, 10, 20, ... s) even when
    # each failed POST takes tens of real milliseconds on a loaded machine (60 s left room for two).
    emu.emulator.notifier.give_up_after = 600.0
    emu.control.create_event(world.ada["id"], event_body("x", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.wait_idle()
    outcomes = [e["outcome"] for e in emu.control.deliveries("change")]
    assert outcomes[-1] == "gave_up" and outcomes.count("failed") >= 3
    missed = [n for n in receiver.notifications("/lifecycle") if n["lifecycleEvent"] == "missed"]
    assert missed and missed[0]["subscriptionId"] == sub["id"]


def test_notifications_wait_while_the_subscription_token_is_expired_until_reauthorized(world, receiver, emu):
    sub = subscribe(world, receiver)
    emu.control.advance_clock(minutes=61)   # the token the subscription was made with has expired
    emu.control.create_event(world.ada["id"], event_body("held", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    wait_until(lambda: "paused" in [e["outcome"] for e in emu.control.deliveries("change")], timeout=10,
               message="the notification to be held")
    # A later change to a subscription made with a fresh token goes out: the notifier has worked past the held one.
    bobs = world.graph(emu.control.token(user_id=world.bob["id"])).post("/subscriptions", sub_body(
        receiver, changeType="created"))
    assert bobs.status_code == 201, bobs.text
    emu.control.create_event(world.bob["id"], event_body("later", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    receiver.wait_for(lambda: receiver.notifications("/notify"))

    def adas() -> list[dict]:
        return [n for n in receiver.notifications("/notify") if n["subscriptionId"] == sub["id"]]

    assert [n["subscriptionId"] for n in receiver.notifications("/notify")] == [bobs.json()["id"]]
    assert adas() == []   # held, not sent and not lost
    fresh = world.graph(emu.control.token(user_id=world.ada["id"]))
    assert fresh.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    emu.control.wait_idle()

    (note,) = adas()
    assert note["changeType"] == "created"
    assert [e["outcome"] for e in emu.control.deliveries("change") if sub["id"] in e["subscription_ids"]] == [
        "paused", "delivered"]


def test_held_notifications_are_given_up_after_the_limit_with_missed(world, receiver, emu):
    sub = subscribe(world, receiver)
    emu.emulator.notifier.give_up_after = 60.0   # 60 s of simulated holding (60 ms at this time scale)
    emu.control.advance_clock(minutes=61)
    emu.control.create_event(world.ada["id"], event_body("held", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.wait_idle()

    assert [e["outcome"] for e in emu.control.deliveries("change")] == ["paused", "gave_up"]
    assert receiver.notifications("/notify") == []
    missed = [n for n in receiver.notifications("/lifecycle") if n["lifecycleEvent"] == "missed"]
    assert missed and missed[0]["subscriptionId"] == sub["id"]


def test_delivery_faults_duplicate_drop_reorder(world, receiver, emu):
    subscribe(world, receiver)
    uid = world.ada["id"]
    emu.control.set_faults(duplicate_rate=1.0, seed=1)
    emu.control.create_event(uid, event_body("dup", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.wait_idle()
    assert len([n for n in receiver.notifications("/notify")]) == 2
    assert [e["outcome"] for e in emu.control.deliveries("change")] == ["delivered", "duplicate"]

    emu.control.set_faults(drop_rate=1.0, seed=1)
    emu.control.create_event(uid, event_body("drop", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.wait_idle()
    assert len(receiver.notifications("/notify")) == 2
    assert emu.control.deliveries("change")[-1]["outcome"] == "dropped"
    assert [n["lifecycleEvent"] for n in receiver.notifications("/lifecycle")] == ["missed"]

    emu.control.set_faults(reorder_rate=1.0, seed=1)
    first = emu.control.create_event(uid, event_body("first", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    wait_until(lambda: not emu.emulator.notifier.queues, timeout=10,
               message="the first change to leave for its own batch")   # which the reorder fault holds back
    emu.control.set_faults(seed=1)
    second = emu.control.create_event(uid, event_body("second", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.wait_idle()
    ids = [n["resourceData"]["id"] for n in receiver.notifications("/notify")[2:]]
    assert ids == [second["id"], first["id"]]


def test_graph_request_faults(world, emu):
    emu.control.set_faults(script=[{"status": 429, "retry_after": "0.5"}, {"status": 503}, {"status": 504}])
    throttled = world.ada_graph.get("/me")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "0.5"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert world.ada_graph.get("/me").status_code == 503
    assert world.ada_graph.get("/me").status_code == 504
    assert world.ada_graph.get("/me").status_code == 200

    emu.control.set_faults(rate_429=0.5, retry_after=2, seed=42)
    statuses = [world.ada_graph.get("/me").status_code for _ in range(40)]
    emu.control.set_faults(rate_429=0.5, retry_after=2, seed=42)
    again = [world.ada_graph.get("/me").status_code for _ in range(40)]
    assert statuses == again, "faults replay with the same seed"
    assert 5 < statuses.count(429) < 35 and set(statuses) == {200, 429}
    emu.control.clear_faults()
    requests_seen = emu.control.graph_requests()
    assert requests_seen[-1]["status"] == 200 and requests_seen[-1]["path"] == "/v1.0/me"


def test_thousand_events_notify_in_a_few_batches(world, receiver, emu):
    subscribe(world, receiver)
    bodies = [event_body(f"E{i}", "2030-03-04T09:00:00", "2030-03-04T10:00:00") for i in range(1000)]
    created = emu.control.create_events(world.ada["id"], bodies)
    emu.control.wait_idle(timeout=60)
    notes = receiver.notifications("/notify")
    assert sorted(n["resourceData"]["id"] for n in notes) == sorted(e["id"] for e in created)
    assert len([p for p in receiver.posts if p["path"] == "/notify"]) <= 20
