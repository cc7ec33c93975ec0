"""Crash safety: a real ``rq worker`` SIGKILLed mid-sync leaves the old cursor; the re-run converges.

The worker shares the test's database on the MongoDB wire server, so what it wrote before the SIGKILL is
exactly what a production worker would have left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from harness.waiting import wait_until
from service import queues
from service.store import calendars
from service.sync import requests, rounds
from tests.support.mailboxes import soon

ROOT = Path(__file__).resolve().parents[2]
RQ = str(Path(sys.executable).with_name("rq"))



def start_worker(tmp_path, settings, mailboxes, *extra) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": settings.redis_url, "MONGODB_URI": settings.mongodb_uri,
           "PYTHONPATH": str(ROOT), "CALSYNC_DATA_DIR": str(tmp_path / "var"),
           "CALSYNC_TEST_GRAPH_URL": mailboxes.handle.graph_url, "CALSYNC_TEST_GRAPH_CA": mailboxes.handle.ca_bundle,
           "CALSYNC_TEST_GRAPH_TOKENS": json.dumps(mailboxes.tokens), "CALSYNC_TEST_PAGE_SIZE": "10",
           "CALSYNC_TEST_HORSE_PID": str(tmp_path / "horse.pid")}
    argv = [RQ, "worker", "--url", settings.redis_url, "--burst", "-w",
            "tests.support.emulated_worker.EmulatedGraphWorker", *extra, queues.SYNC]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.wire
def test_sigkill_mid_sync_leaves_the_old_cursor_and_the_rerun_converges(
        tmp_path, rt, mailbox, mailboxes, run_jobs, redis_conn, monkeypatch):
    user_id = mailbox("crash")
    monkeypatch.setattr(rounds, "PAGE_SIZE", 10)   # as in the worker: several pages, so a SIGKILL lands mid-round
    ids = mailboxes.create_many(user_id, [soon(d % 35, 9 + d % 8) for d in range(40)])
    requests.request_sync(rt.redis, user_id, "connect")
    run_jobs()
    old_link = calendars.for_user(rt.db, user_id)[0].delta_link
    for n, event_id in enumerate(ids):
        mailboxes.update(user_id, event_id, subject=f"changed {n}") if n % 3 else mailboxes.delete(user_id, event_id)
    mailboxes.create_many(user_id, [soon(d % 30, 13) for d in range(60)])
    mailboxes.slow_delta(user_id, 0.25)
    pages_before = mailboxes.delta_pages(user_id)
    requests.request_sync(rt.redis, user_id, "webhook")

    worker = start_worker(tmp_path, rt.settings, mailboxes)
    wait_until(lambda: mailboxes.delta_pages(user_id) >= pages_before + 4 and (tmp_path / "horse.pid").exists(),
               timeout=60, interval=0.02, message="the sync to be four pages in, in its work horse")
    horse = int((tmp_path / "horse.pid").read_text())
    os.kill(worker.pid, signal.SIGKILL)   # the worker first, so it cannot report its horse's death
    os.kill(horse, signal.SIGKILL)
    worker.wait(timeout=10)
    worker.stderr.close()

    assert calendars.for_user(rt.db, user_id)[0].delta_link == old_link      # no half-applied cursor
    assert rt.db.events.count_documents({"subject": {"$regex": "^changed"}}) > 0   # some pages applied
    assert mailboxes.differences(rt.db, rt.settings, user_id) != []

    queue = queues.get_queue(queues.SYNC, redis_conn)
    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 3600)      # RQ's abandoned-job handling
    registry = ScheduledJobRegistry(queue=queue)
    (job_id,) = registry.get_job_ids()
    registry.schedule(queue.fetch_job(job_id), datetime.now(UTC) - timedelta(seconds=1))
    mailboxes.slow_delta(user_id, 0)
    rerun = start_worker(tmp_path, rt.settings, mailboxes, "--with-scheduler")
    _, stderr = rerun.communicate(timeout=120)

    assert rerun.returncode == 0, stderr[-2000:]
    assert queue.fetch_job(job_id).get_status() == "finished"
    assert mailboxes.differences(rt.db, rt.settings, user_id) == []
    assert calendars.for_user(rt.db, user_id)[0].delta_link != old_link
    # The retry started from scratch: a delta from the old cursor need not list an event the killed run
    # stored and Graph removed since, so only a full round is sure to drop it.
    assert calendars.for_user(rt.db, user_id)[0].last_result.startswith("full:")
