"""The renewal sweep's plan: spread per tenant, soonest expiry first, never past Graph's per-tenant rate."""

from __future__ import annotations

from datetime import timedelta

from rq.registry import ScheduledJobRegistry

from service.store import subscriptions as store
from service.store import utcnow
from service.store.records import Subscription
from service.subscriptions import sweep as jobs
from service.workers import jobs as worker_jobs


def seed(db, count: int, tenant: str, status: str = "connected", minutes: int = 60, prefix: str = "s"):
    now = utcnow()
    for i in range(count):
        user_id = f"{prefix}-{tenant}-{i}"
        db.users.insert_one({"_id": user_id, "connection": {"status": status}})
        store.replace_for_user(db, Subscription(id=f"{user_id}-sub", user_id=user_id, tenant_id=tenant,
                                                client_state="x", expires_at=now + timedelta(minutes=minutes + i)))


def test_plan_spreads_each_tenant_under_the_rate_and_defers_the_rest(db):
    seed(db, 30, "t1")
    seed(db, 5, "t2")
    seed(db, 3, "t1", status="needs_reconnect", prefix="gone")
    seed(db, 4, "t1", minutes=10_000, prefix="later")  # outside the margin
    plan = jobs.plan_renewals(db, utcnow(), margin_minutes=1_440, rate=2, span=10)
    t1 = [delay for sid, delay in plan.scheduled if "-t1-" in sid]
    t2 = [delay for sid, delay in plan.scheduled if "-t2-" in sid]
    assert t1 == [i / 2 for i in range(20)]  # 2 per second, 20 per 10 s sweep
    assert t2 == [i / 2 for i in range(5)]
    assert plan.deferred == 10
    assert sorted(plan.not_connected) == [f"gone-t1-{i}-sub" for i in range(3)]
    first = [sid for sid, _ in plan.scheduled if "-t1-" in sid][:3]
    assert first == ["s-t1-0-sub", "s-t1-1-sub", "s-t1-2-sub"]  # soonest expiry first


def test_default_rate_stays_far_below_graphs_limit():
    per_20_seconds = jobs.RENEWALS_PER_SECOND_PER_TENANT * 20
    assert per_20_seconds <= 1_000 / 4
    sweeps_for_100k = 100_000 / (jobs.RENEWALS_PER_SECOND_PER_TENANT * jobs.SWEEP_SPAN_SECONDS)
    assert sweeps_for_100k * jobs.SWEEP_SPAN_SECONDS < 24 * 3600  # inside the default one-day margin


def test_sweep_schedules_jobs_in_the_future_and_claims_them(rt, db, redis_conn):
    seed(db, 12, "t1")
    seed(db, 2, "t1", status="disconnected", prefix="off")
    counts = worker_jobs.renewal_sweep()
    assert counts == {"scheduled": 12, "not_connected": 2, "deferred": 0, "repaired": 0, "switches": 0}
    scheduled = ScheduledJobRegistry("subscriptions", connection=redis_conn).get_job_ids()
    assert len(scheduled) == 11  # the first one is queued now, the rest spread over the next second
    assert worker_jobs.renewal_sweep() == {"scheduled": 0, "not_connected": 0, "deferred": 0, "repaired": 0,
                                           "switches": 0}
    claimed = store.get(db, "s-t1-5-sub").next_attempt_at
    assert claimed > utcnow() + jobs.CLAIM_GRACE - timedelta(seconds=5)
