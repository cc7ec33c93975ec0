"""Deleting a user's data while their sync is running: the sync must not write back what was deleted."""

from __future__ import annotations

import threading
import time

import pytest

from service.digest import plan
from service.store import users
from service.sync import requests as sync_requests
from tests.support.fakegraph import soon


@pytest.mark.wire
def test_a_delete_while_a_sync_is_running_is_not_undone_by_the_sync(rt, connected, fake_graph, run_jobs):
    """The sync stops at its next page and the purge waits for its lock: nothing is written back."""
    user_id = connected("dana")
    for d in range(60):
        fake_graph.create(user_id, soon(d % 30, 8 + d % 9))
    plan.reschedule(rt.db, user_id, "06:30")
    fake_graph.page_delay, fake_graph.default_page_size = 0.2, 5
    sync_requests.request_sync(rt.redis, user_id, "connect")
    worker = threading.Thread(target=run_jobs)
    worker.start()
    deadline = time.monotonic() + 20
    while not rt.db.events.count_documents({"user_id": user_id}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rt.db.events.count_documents({"user_id": user_id}) > 0    # the sync is mid-way

    done = rt.connections.delete_all_data(user_id)
    worker.join(30)

    assert not done.get("pending") and done["user"] is True
    assert rt.db.events.count_documents({"user_id": user_id}) == 0
    assert rt.db.calendars.count_documents({"user_id": user_id}) == 0 and users.get(rt.db, user_id) is None
    time.sleep(0.5)
    run_jobs()                                                  # whatever is still queued changes nothing
    assert rt.db.events.count_documents({"user_id": user_id}) == 0 and users.get(rt.db, user_id) is None
