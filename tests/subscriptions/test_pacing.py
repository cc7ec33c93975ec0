"""Subscription writes paced per tenant across workers (service.subscriptions.pacing), against the emulator's
subscription service limit."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from service.graph import Throttled
from service.subscriptions.lifecycle import PacedGraph
from service.subscriptions.pacing import KEY, PaceExceeded, SubscriptionPacer
from tests.support.connect import connect_user, emulated_user
from tests.support.tenant_admin import GLOBAL_ADMIN, connect_tenant, new_tenant


class Waits:
    """A sleep that records what it was asked to wait instead of waiting."""

    def __init__(self):
        self.asked: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self.lock:
            self.asked.append(seconds)


def test_a_burst_then_one_write_per_interval_shared_by_every_worker(redis_conn):
    waits = Waits()
    # 25 writes per 20 s with a burst of 5: then one per 1 s, so that any 20-second window holds at most 25.
    workers = [SubscriptionPacer(redis_conn, writes=25, burst=5, sleep=waits) for _ in range(2)]
    assert workers[0].interval_ms == pytest.approx(1000)
    slots = [workers[n % 2].acquire("tenant-a") for n in range(8)]
    assert slots[:5] == [0.0] * 5, "an idle tenant starts with its burst"
    # The later ones are queued one interval apart, whichever worker asked (a few ms of real time pass).
    assert [round(s) for s in slots[5:]] == [1, 2, 3]
    assert waits.asked == slots[5:], "each worker slept until its own slot"
    assert workers[1].acquire("tenant-b") == 0.0, "another tenant has its own pace"
    assert workers[0].acquire(None) == 0.0, "a mailbox without a tenant is not paced"


def test_a_slot_too_far_off_is_refused_without_being_taken(redis_conn):
    pacer = SubscriptionPacer(redis_conn, writes=25, burst=5, max_wait=1.5, sleep=Waits())
    for _ in range(5):
        pacer.acquire("tenant-a")
    assert pacer.acquire("tenant-a") == pytest.approx(1.0, abs=0.1)
    with pytest.raises(PaceExceeded) as refused:
        pacer.acquire("tenant-a")
    assert 1.5 < refused.value.retry_after <= 2.05
    with pytest.raises(PaceExceeded) as again:
        pacer.acquire("tenant-a")
    assert again.value.retry_after <= refused.value.retry_after + 0.01, "a refusal takes no slot"


def test_a_429_pauses_the_tenant_for_every_worker(redis_conn):
    waits = Waits()
    one, two = (SubscriptionPacer(redis_conn, writes=25, burst=5, sleep=waits) for _ in range(2))
    one.pause("tenant-a", 12)
    assert 11.5 <= two.acquire("tenant-a") <= 12.0
    assert 0 < redis_conn.pttl(KEY.format(tenant="tenant-a"))


def test_enrolment_writes_at_the_pace_and_graph_never_throttles(stack):
    """The emulator allows 24 writes per 20 s; the workers' pace is the same. Enrolling 30 mailboxes from
    several threads: 24 subscriptions go at once (their burst); the others are paced back to the job layer
    (Throttled, retried by RQ) rather than sent, so Graph's 429 never comes."""
    control = stack.emulator.control
    control.set_limits(subscription_writes_per_20_seconds=24)
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    people = [emulated_user(stack, mail=f"p{n}@contoso.com", tenant_id=tenant) for n in range(29)]
    subscriptions = stack.runtime.connections.subscriptions
    subscriptions.pacer = SubscriptionPacer(stack.runtime.redis, writes=24, burst=24 - 1, max_wait=0.5)
    connect_tenant(stack, admin["id"])
    stack.runtime.tenant_wide.sync_directory(tenant)   # the directory round: enrolment jobs queued, not run
    outcomes: list[str] = []
    lock = threading.Lock()

    def enrol(user_ids: list[str]) -> None:
        for user_id in user_ids:
            try:
                outcome = stack.runtime.tenant_wide.enrol_mailbox(user_id)
            except Throttled as exc:
                outcome = exc.code
            with lock:
                outcomes.append(outcome)

    ids = [admin["id"]] + [p["id"] for p in people]
    threads = [threading.Thread(target=enrol, args=(ids[n::3],)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    limits = control.limits()
    assert limits["throttled"]["SubscriptionWriteRate"] == 0, "Graph never had to say 429"
    (mine,) = [t for t in limits["tenants"] if t["tenant_id"] == tenant]
    assert mine["subscription_writes"] == outcomes.count("subscribed:new") == 23, "the burst, then 20 s apart"
    assert outcomes.count("SubscriptionWritesPaced") == 30 - outcomes.count("subscribed:new")


def test_a_429_on_a_write_pauses_the_tenant_for_every_later_write(stack):
    control = stack.emulator.control
    tenant = new_tenant(stack)
    ada = emulated_user(stack, mail="ada@contoso.com", tenant_id=tenant)
    connect_user(stack, ada["id"])
    stack.run_jobs()
    graph = PacedGraph(stack.runtime.graph_for(ada["id"]),
                       SubscriptionPacer(stack.runtime.redis, writes=1_000, max_wait=5), tenant)
    (sub_id,) = [s["id"] for s in graph.get_json("subscriptions")["value"]]
    control.set_limits(subscription_writes_per_20_seconds=1)
    expiry = {"expirationDateTime": (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    graph.request("PATCH", f"subscriptions/{sub_id}", json=expiry)
    with pytest.raises(Throttled) as throttled:
        graph.request("PATCH", f"subscriptions/{sub_id}", json=expiry)
    assert throttled.value.status == 429 and throttled.value.code == "TooManyRequests"
    assert stack.runtime.redis.pttl(KEY.format(tenant=tenant)) > 5_000, "the Retry-After, for every worker"
    another_worker = PacedGraph(stack.runtime.graph_for(ada["id"]),
                                SubscriptionPacer(stack.runtime.redis, writes=1_000, max_wait=5), tenant)
    with pytest.raises(Throttled) as held_back:
        another_worker.request("PATCH", f"subscriptions/{sub_id}", json=expiry)
    assert held_back.value.code == "SubscriptionWritesPaced" and held_back.value.retry_after > 5
    started = time.monotonic()
    with pytest.raises(Throttled):   # a delete (also sent from web requests) waits 2 s at most, not 5
        another_worker.request("DELETE", f"subscriptions/{sub_id}")
    assert time.monotonic() - started < 1.0, "refused at once: its slot is further off than 2 s"
    assert control.limits()["throttled"]["SubscriptionWriteRate"] == 1, "the held-back write never reached Graph"


def test_the_burst_costs_at_most_two_percent_of_the_limit(redis_conn):
    at_graphs = SubscriptionPacer(redis_conn, writes=1_000)
    assert at_graphs.burst == 20 and at_graphs.interval_ms == pytest.approx(20_000 / 980)
    lowered = SubscriptionPacer(redis_conn, writes=100)
    assert lowered.burst == 2 and lowered.interval_ms == pytest.approx(20_000 / 98)
    assert SubscriptionPacer(redis_conn, writes=10).burst == 1
