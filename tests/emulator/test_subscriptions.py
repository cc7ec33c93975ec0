"""Subscriptions: the validation handshake, Graph's limits and errors, renew/delete/reauthorize, expiry."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs

import pytest

from tests.support.emulated import event_body, iso, sub_body


def test_create_performs_the_handshake_on_both_urls(world, receiver):
    response = world.ada_graph.post("/subscriptions", sub_body(receiver))
    assert response.status_code == 201, response.text
    sub = response.json()
    assert sub["@odata.context"].endswith("$metadata#subscriptions/$entity")
    assert sub["changeType"] == "created,updated,deleted" and sub["clientState"] == "s3cret"
    assert sub["resource"] == "me/events" and sub["notificationContentType"] == "application/json"
    assert sub["latestSupportedTlsVersion"] == "v1_2" and sub["includeResourceData"] is False
    assert sub["creatorId"] == world.ada["id"]
    assert [v["path"] for v in receiver.validations] == ["/notify", "/lifecycle"]
    first = receiver.validations[0]
    assert first["content_type"] == "text/plain; charset=utf-8"
    assert parse_qs(first["query"])["tenant"] == ["x"]  # the URL's own query string is kept
    assert " " in first["token"] and ":" in first["token"]  # decoded by the receiver, so it was URL-encoded
    log = world.handle.control.deliveries("validation")
    assert [entry["outcome"] for entry in log] == ["ok", "ok"]


@pytest.mark.parametrize(("mode", "fragment"), [
    ("wrong", "exactly match validationToken"),
    ("json", "text/plain"),
    ("status500", "200 OK"),
    ("slow", "timed out"),
])
def test_handshake_failures_fail_creation_with_400(world, receiver, mode, fragment):
    receiver.validation = mode
    response = world.ada_graph.post("/subscriptions", sub_body(receiver))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidRequest" and fragment in error["message"]
    receiver.validation = "echo"
    assert world.handle.control.subscriptions() == []


def test_lifetime_limits_client_state_and_urls(world, receiver):
    too_long = world.ada_graph.post("/subscriptions", sub_body(receiver, expirationDateTime=iso(10_081)))
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "ExtensionError"
    assert "10080 minutes" in too_long.json()["error"]["message"]
    state = world.ada_graph.post("/subscriptions", sub_body(receiver, clientState="x" * 129))
    assert state.status_code == 400
    remote = world.ada_graph.post("/subscriptions", sub_body(receiver, notificationUrl="http://example.com/hook"))
    assert remote.status_code == 400 and "HTTPS" in remote.json()["error"]["message"]
    bad_resource = world.ada_graph.post("/subscriptions", sub_body(receiver, resource="me/messages"))
    assert bad_resource.status_code == 400
    short = world.ada_graph.post("/subscriptions", sub_body(receiver, expirationDateTime=iso(5)))
    assert short.status_code == 201
    expires = dt.datetime.fromisoformat(short.json()["expirationDateTime"].replace("Z", "+00:00"))
    assert expires - dt.datetime.now(dt.UTC) > dt.timedelta(minutes=44)


def test_duplicate_subscription_is_409(world, receiver):
    assert world.ada_graph.post("/subscriptions", sub_body(receiver)).status_code == 201
    again = world.ada_graph.post("/subscriptions", sub_body(receiver))
    assert again.status_code == 409
    assert "already exists for the requested combination" in again.json()["error"]["message"]


def test_duplicates_are_per_mailbox_me_events_of_two_people_are_two_resources(world, receiver):
    bob_graph = world.graph(world.handle.control.token(user_id=world.bob["id"]))
    assert world.ada_graph.post("/subscriptions", sub_body(receiver)).status_code == 201
    assert bob_graph.post("/subscriptions", sub_body(receiver)).status_code == 201          # Bob's me/events
    again = bob_graph.post("/subscriptions", sub_body(receiver))
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]


def test_delegated_cannot_subscribe_to_another_mailbox_but_app_can(world, receiver):
    other = world.ada_graph.post("/subscriptions", sub_body(receiver, resource=f"users/{world.bob['id']}/events"))
    assert other.status_code == 403
    app = world.app_graph.post("/subscriptions", sub_body(receiver, resource=f"users/{world.bob['id']}/events"))
    assert app.status_code == 201
    me = world.app_graph.post("/subscriptions", sub_body(receiver, resource="me/events"))
    assert me.status_code == 400


def test_get_renew_reauthorize_delete(world, receiver):
    sub = world.ada_graph.post("/subscriptions", sub_body(receiver)).json()
    path = f"/subscriptions/{sub['id']}"
    assert world.ada_graph.get(path).json()["id"] == sub["id"]
    assert [s["id"] for s in world.ada_graph.get("/subscriptions").json()["value"]] == [sub["id"]]
    renewed = world.ada_graph.patch(path, {"expirationDateTime": iso(9000)})
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] != sub["expirationDateTime"]
    assert world.ada_graph.patch(path, {}).status_code == 400
    assert world.ada_graph.post(f"{path}/reauthorize").status_code == 204
    assert world.ada_graph.delete(path).status_code == 204
    assert world.ada_graph.get(path).status_code == 404
    assert world.ada_graph.patch(path, {"expirationDateTime": iso(100)}).status_code == 404


def test_subscriptions_expire_on_the_emulator_clock(world, receiver, emu):
    sub = world.ada_graph.post("/subscriptions", sub_body(receiver, expirationDateTime=iso(60))).json()
    emu.control.advance_clock(minutes=61)
    fresh = world.graph(emu.control.token(user_id=world.ada["id"]))
    gone = fresh.patch(f"/subscriptions/{sub['id']}", {"expirationDateTime": iso(200, emu_now(emu))})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ResourceNotFound"
    emu.control.create_event(world.ada["id"], event_body("x", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    emu.control.wait_idle()
    assert receiver.notifications("/notify") == []


def emu_now(emu) -> dt.datetime:
    return dt.datetime.fromisoformat(emu.control.request("GET", "/clock")["now"].replace("Z", "+00:00"))


def test_lifecycle_notifications(world, receiver, emu):
    sub = world.ada_graph.post("/subscriptions", sub_body(receiver, expirationDateTime=iso(600))).json()
    emu.control.advance_clock(minutes=545)  # within an hour of expiry -> reauthorizationRequired
    receiver.wait_for(lambda: receiver.notifications("/lifecycle"))
    (note,) = receiver.notifications("/lifecycle")
    assert note == {"subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
                    "tenantId": world.tenant["id"], "clientState": "s3cret",
                    "lifecycleEvent": "reauthorizationRequired"}
    emu.control.send_lifecycle(sub["id"], "missed")
    emu.control.remove_subscription(sub["id"])
    receiver.wait_for(lambda: len(receiver.notifications("/lifecycle")) == 3)
    events = [n["lifecycleEvent"] for n in receiver.notifications("/lifecycle")]
    assert events == ["reauthorizationRequired", "missed", "subscriptionRemoved"]
    token = emu.control.token(user_id=world.ada["id"])
    assert world.graph(token).get(f"/subscriptions/{sub['id']}").status_code == 404
