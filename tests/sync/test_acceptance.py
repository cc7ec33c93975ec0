"""Acceptance: 10 users, 1,000 random changes through the emulator, its notifications and faults (the
long profile: CALSYNC_ACCEPTANCE_USERS=20 CALSYNC_ACCEPTANCE_OPERATIONS=2000, or more).

Notifications reach calsync's real /webhooks/graph over loopback with duplicates, reordering and drops
(a dropped one is followed by a ``missed`` lifecycle notification), and a burst of 429s hits the delta
endpoint. After the queues drain, each user's stored window equals the emulator's truth field by field,
and no stored document carries a body, a location or anything else not on the list.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

import pytest
from rq.registry import ScheduledJobRegistry

from harness.waiting import wait_until
from service import queues
from service.store import events
from service.sync import rounds
from tests.support.calendars import Calendar, expected, stored
from tests.support.connect import connect_user, emulated_user

USERS = int(os.environ.get("CALSYNC_ACCEPTANCE_USERS", "10"))
OPERATIONS = int(os.environ.get("CALSYNC_ACCEPTANCE_OPERATIONS", "1000"))


def drain(stack, timeout: float = 60.0) -> None:
    """Run jobs until no queue has work and no sync is scheduled. A throttled sync comes back after the delay
    it was given; here it is due at once (the delay is the sync tests' to check, convergence this test's), so
    how long draining takes depends on the work left, not on the clock."""
    redis = stack.runtime.redis
    queue = queues.get_queue(queues.SYNC, redis)
    scheduled = ScheduledJobRegistry(queue=queue)

    def drained() -> bool:
        for job_id in scheduled.get_job_ids():
            if (job := queue.fetch_job(job_id)) is not None:
                scheduled.schedule(job, datetime.now(UTC) - timedelta(seconds=1))
        stack.run_jobs(max_rounds=500)
        return not sum(queues.get_queue(name, redis).count for name in queues.ALL) and not scheduled.count

    try:
        wait_until(drained, timeout=timeout, interval=0.2, message="the queues to drain")
    except AssertionError as exc:
        left = {name: [j.func_name for j in queues.get_queue(name, redis).get_jobs()] for name in queues.ALL}
        raise AssertionError(f"{exc}: {left}, scheduled syncs {scheduled.get_job_ids()}") from None


@pytest.mark.slow
def test_random_changes_with_mangled_notifications_and_429s_converge(stack):
    control = stack.emulator.control
    rng = random.Random(20260601)
    calendars = []
    for n in range(USERS):
        user = emulated_user(stack, mail=f"person{n}@contoso.com")
        assert connect_user(stack, user["id"]) == user["id"]
        calendars.append(Calendar(control, user, rng))
    drain(stack)
    control.set_faults(duplicate_rate=0.15, reorder_rate=0.15, drop_rate=0.05, seed=7)

    for done in range(1, OPERATIONS + 1):
        rng.choice(calendars).step()
        if done == OPERATIONS // 2:     # a burst of throttling on the delta endpoint
            control.set_faults(duplicate_rate=0.15, reorder_rate=0.15, drop_rate=0.05, rate_429=0.5,
                               retry_after="0.3", path_prefix="/users/", seed=8)
        if done == OPERATIONS // 2 + OPERATIONS // 5:
            control.set_faults(duplicate_rate=0.15, reorder_rate=0.15, drop_rate=0.05, seed=9)
        if done % 100 == 0:
            control.wait_idle(timeout=30)
            drain(stack)
    control.clear_faults()
    control.wait_idle(timeout=30)
    drain(stack)

    window = rounds.window_for(stack.settings, datetime.now(UTC))
    start, end = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in window)
    total = 0
    for calendar in calendars:
        user_id = calendar.user["id"]
        truth = {item["id"]: expected(item) for item in control.calendar(user_id, start, end)}
        mine = {doc["graph_id"]: stored(doc) for doc in stack.runtime.db.events.find({"user_id": user_id})}
        assert mine.keys() == truth.keys(), calendar.user["mail"]
        for graph_id, want in truth.items():
            assert mine[graph_id] == want, (calendar.user["mail"], graph_id)
        total += len(truth)
    assert total > USERS * 10
    for doc in stack.runtime.db.events.find({}):
        assert set(doc) <= events.STORED_FIELDS
        assert "SECRET" not in repr(doc) and "Secret room" not in repr(doc)
