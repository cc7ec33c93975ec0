"""Deleting a user's data while their sync is running: the sync must not write back what was deleted."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from harness.waiting import wait_until
from service import queues
from service.digest import plan
from service.store import users
from service.sync import requests as sync_requests
from tests.support.mailboxes import soon


@pytest.mark.wire
def test_a_delete_while_a_sync_is_running_is_not_undone_by_the_sync(rt, mailbox, mailboxes, run_jobs):
    """The sync stops at its next page and the purge waits for its lock: nothing is written back."""
    user_id = mailbox("dana")
    mailboxes.create_many(user_id, [soon(d % 30, 8 + d % 9) for d in range(60)])
    plan.reschedule(rt.db, user_id, "06:30")
    mailboxes.slow_delta(user_id, 0.2)     # six pages of ten, each 0.2 s late: the delete comes mid-way
    sync_requests.request_sync(rt.redis, user_id, "connect")
    worker = threading.Thread(target=run_jobs)
    worker.start()
    wait_until(lambda: rt.db.events.count_documents({"user_id": user_id}), timeout=20,
               message="the sync to store its first page")     # the sync is mid-way

    done = rt.connections.delete_all_data(user_id)
    worker.join(30)

    assert not done.get("pending") and done["user"] is True
    assert rt.db.events.count_documents({"user_id": user_id}) == 0
    assert rt.db.calendars.count_documents({"user_id": user_id}) == 0 and users.get(rt.db, user_id) is None
    for name in queues.ALL:            # whatever is still queued or scheduled (a retry) runs now...
        registry = ScheduledJobRegistry(name, connection=rt.redis)
        for job_id in registry.get_job_ids():
            registry.schedule(Job.fetch(job_id, connection=rt.redis), datetime.now(UTC) - timedelta(seconds=1))
    run_jobs()
    assert not any(queues.get_queue(name, rt.redis).count or ScheduledJobRegistry(name, connection=rt.redis).count
                   for name in queues.ALL)                      # ...every job ran: none is left to run later
    assert rt.db.events.count_documents({"user_id": user_id}) == 0 and users.get(rt.db, user_id) is None
