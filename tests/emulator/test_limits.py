"""Outlook's mailbox limits per app and mailbox: 4 concurrent requests and 10,000 requests per 10 minutes; the
subscription service's writes per app and tenant."""

from __future__ import annotations

import threading

import pytest

from emulator.identity import DEV_CLIENT_ID
from emulator.testing import ControlError
from harness.waiting import wait_until
from tests.support.emulated import assert_graph_error, sub_body

CONCURRENCY_MESSAGE = "Application is over its MailboxConcurrency limit."


def stats_for(emu, mailbox_id: str, app_id: str = DEV_CLIENT_ID) -> dict:
    (entry,) = [m for m in emu.control.limits()["mailboxes"]
                if m["mailbox_id"] == mailbox_id and m["app_id"] == app_id]
    return entry


def burst(world, path: str, threads: int) -> list:
    """``threads`` requests for ``path`` released at once, each on its own warmed-up connection."""
    graphs = [world.graph(world.handle.control.token(user_id=world.ada["id"])) for _ in range(threads)]
    for graph in graphs:
        assert graph.get("/me").status_code == 200  # /me is a directory read, outside the mailbox limits
    barrier = threading.Barrier(threads)
    results: list = [None] * threads

    def run(index: int) -> None:
        barrier.wait()
        results[index] = graphs[index].get(path)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return results


def test_a_fifth_concurrent_request_to_a_mailbox_is_throttled(world, emu):
    # Each admitted request holds its slot 3 s: all eight arrive within that even on a starved machine (with 0.6 s,
    # under load in CI, some arrived after the first ones had finished, and 7 got through).
    emu.control.set_faults(slow_rate=1.0, slow_seconds=3.0, path_prefix="/me/calendars")
    results = burst(world, "/me/calendars", 8)
    emu.control.clear_faults()
    ok = [r for r in results if r.status_code == 200]
    throttled = [r for r in results if r.status_code == 429]
    assert len(ok) == 4 and len(throttled) == 4
    for response in throttled:
        body = assert_graph_error(response, 429, "ApplicationThrottled")
        assert body["error"]["message"] == CONCURRENCY_MESSAGE
        assert response.headers["Retry-After"] == "1"
    stats = stats_for(emu, world.ada["id"])
    assert stats["peak_concurrency"] == 4 and stats["in_flight"] == 0
    assert stats["throttled"] == {"MailboxConcurrency": 4} and stats["requests"] == 4
    assert emu.control.limits()["throttled"] == {"MailboxConcurrency": 4, "MailboxRequestRate": 0,
                                                 "SubscriptionWriteRate": 0}
    assert world.ada_graph.get("/me/calendars").status_code == 200, "every slot was given back"


def test_limits_are_per_mailbox_and_slots_come_back_after_failures(world, emu):
    emu.control.set_limits(mailbox_concurrency=1)
    emu.control.set_faults(script=[{"status": 503}, {"status": 500}])
    assert world.ada_graph.get("/me/calendars").status_code == 503
    assert world.ada_graph.get("/me/calendars").status_code == 500
    assert world.ada_graph.get("/me/calendars/AAMkADNinope").status_code == 404
    assert world.ada_graph.get("/me/calendarView/delta").status_code == 400
    assert world.ada_graph.get("/me/calendars").status_code == 200, "failed requests released their slot"
    assert stats_for(emu, world.ada["id"])["in_flight"] == 0

    emu.control.set_faults(slow_rate=1.0, slow_seconds=3.0, path_prefix=f"/users/{world.ada['id']}/")
    holder = threading.Thread(target=world.app_graph.get, args=(f"/users/{world.ada['id']}/calendars",))
    holder.start()
    wait_until(lambda: stats_for(emu, world.ada["id"])["in_flight"], timeout=5, interval=0.01,
               message="the slow request to start")
    assert_graph_error(world.app_graph.get(f"/users/{world.ada['id']}/calendar"), 429, "ApplicationThrottled")
    assert world.app_graph.get(f"/users/{world.bob['id']}/calendars").status_code == 200, "another mailbox"
    other_app = world.graph(emu.control.token(tenant_id=world.tenant["id"], client_id="another-app"))
    assert other_app.get(f"/users/{world.ada['id']}/calendars").status_code == 200, "another app"
    holder.join(timeout=10)
    emu.control.clear_faults()


def test_the_request_rate_per_mailbox_with_retry_after_on_the_emulator_clock(world, emu):
    emu.control.set_limits(mailbox_requests_per_10_minutes=3)
    for _ in range(3):
        assert world.ada_graph.get("/me/calendars").status_code == 200
    for _ in range(5):
        assert world.ada_graph.get("/me").status_code == 200, "/me is not a mailbox request"
    throttled = world.ada_graph.get("/me/calendars")
    body = assert_graph_error(throttled, 429, "ApplicationThrottled")
    assert "MailboxRequestRate" in body["error"]["message"] and "3 requests per 10 minutes" in body["error"]["message"]
    retry_after = int(throttled.headers["Retry-After"])
    assert 590 <= retry_after <= 600
    assert world.app_graph.get(f"/users/{world.bob['id']}/calendars").status_code == 200, "another mailbox"

    emu.control.advance_clock(seconds=retry_after - 30)
    still = world.ada_graph.get("/me/calendars")
    assert still.status_code == 429 and 1 <= int(still.headers["Retry-After"]) <= 30
    emu.control.advance_clock(seconds=31)
    assert world.ada_graph.get("/me/calendars").status_code == 200
    stats = stats_for(emu, world.ada["id"])
    assert stats["throttled"] == {"MailboxRequestRate": 2} and stats["requests"] == 4


def test_limits_control(emu):
    assert emu.control.limits() == {"mailbox_concurrency": 4, "mailbox_requests_per_10_minutes": 10_000,
                                    "subscription_writes_per_20_seconds": 1_000,
                                    "throttled": {"MailboxConcurrency": 0, "MailboxRequestRate": 0,
                                                  "SubscriptionWriteRate": 0},
                                    "mailboxes": [], "tenants": []}
    lifted = emu.control.set_limits(mailbox_concurrency=None, mailbox_requests_per_10_minutes=50)
    assert lifted["mailbox_concurrency"] is None and lifted["mailbox_requests_per_10_minutes"] == 50
    assert emu.control.set_limits()["mailbox_concurrency"] == 4, "absent settings take Outlook's values"
    for bad in ({"mailbox_concurrency": 0}, {"mailbox_concurrency": "4"}, {"mailbox_concurrency": True},
                {"per_second": 5}):
        with pytest.raises(ControlError) as refused:
            emu.control.set_limits(**bad)
        assert refused.value.status == 400
    emu.control.set_limits(mailbox_concurrency=2)
    emu.control.reset()
    assert emu.control.limits()["mailbox_concurrency"] == 4


def test_subscription_writes_per_app_and_tenant_on_a_20_second_window(world, emu, receiver):
    """Create, update, reauthorize and delete count; reads do not; another tenant has its own window."""
    emu.control.set_limits(subscription_writes_per_20_seconds=4)
    created = world.ada_graph.post("/subscriptions", sub_body(receiver))
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    assert world.ada_graph.patch(f"/subscriptions/{sub_id}", {"expirationDateTime": created.json()[
        "expirationDateTime"]}).status_code == 200
    assert world.ada_graph.post(f"/subscriptions/{sub_id}/reauthorize", {}).status_code == 204
    for _ in range(3):
        assert world.ada_graph.get("/subscriptions").status_code == 200, "reads are not writes"
    app_made = world.app_graph.post("/subscriptions", sub_body(receiver, resource=f"users/{world.bob['id']}/events"))
    assert app_made.status_code == 201, "the fourth write: the app's writes in the tenant, whatever the token"

    throttled = world.ada_graph.delete(f"/subscriptions/{sub_id}")
    assert_graph_error(throttled, 429, "TooManyRequests")
    assert 1 <= int(throttled.headers["Retry-After"]) <= 20
    other = emu.control.create_tenant(display_name="Fabrikam")["id"]
    carol = emu.control.create_user(tenant_id=other, mail="carol@fabrikam.example")
    carol_graph = world.graph(emu.control.token(user_id=carol["id"]))
    carols = carol_graph.post("/subscriptions", sub_body(receiver, resource=f"users/{carol['id']}/events"))
    assert carols.status_code == 201, "another tenant's window"

    emu.control.advance_clock(seconds=21)
    assert world.ada_graph.delete(f"/subscriptions/{sub_id}").status_code == 204
    (mine,) = [t for t in emu.control.limits()["tenants"] if t["tenant_id"] == world.tenant["id"]]
    assert mine["subscription_writes"] == 5 and mine["peak_writes_per_20_seconds"] == 4 and mine["throttled"] == 1
    assert emu.control.limits()["throttled"]["SubscriptionWriteRate"] == 1
