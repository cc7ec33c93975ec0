"""Exactly one prep mail per meeting occurrence with two schedulers, redelivered jobs and two real
``rq worker`` processes racing for them (they share the test's database on the MongoDB wire server)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import pytest

from service import queues
from service.digest import prep
from service.store import preps as preps_store
from service.workers.scheduler import LAST_RUN_KEY, PERIODIC, Scheduler
from tests.support.factories import add_event, add_people, add_user, attendee

ROOT = Path(__file__).resolve().parents[2]
RQ = str(Path(sys.executable).with_name("rq"))


def start_worker(tmp_path, settings, smtp_url: str, name: str) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": settings.redis_url, "MONGODB_URI": settings.mongodb_uri,
           "CALSYNC_SMTP_URL": smtp_url, "PYTHONPATH": str(ROOT), "CALSYNC_DATA_DIR": str(tmp_path / name)}
    argv = [RQ, "worker", "-w", "service.workers.worker.Worker", "--url", settings.redis_url, "--burst",
            "--name", name, queues.PREP]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.wire
def test_two_schedulers_redelivered_jobs_and_two_workers_send_each_prep_once(
        tmp_path, rt, db, redis_conn, smtp_inbox):
    add_people(db)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)   # due now with the 15-minute default
    for n in range(3):
        user = add_user(db, user_id=f"user-{n}", email=f"u{n}@example.com")
        add_event(db, user.id, f"m{n}", start, start + timedelta(minutes=30),
                  attendees=[attendee(f"u{n}@example.com"), attendee("ana@example.com")])
    tasks = tuple(t for t in PERIODIC if t.name == "prep-tick")
    first, second = Scheduler(redis_conn, tasks, identity="a"), Scheduler(redis_conn, tasks, identity="b")

    ticks: list[list[str]] = []
    threads = [threading.Thread(target=lambda s=s: ticks.append(s.tick())) for s in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first.resign()
    redis_conn.delete(LAST_RUN_KEY.format(name="prep-tick"))   # a new leader that missed the last run
    ticks.append(second.tick())
    for due in prep.due_preps(db, datetime.now(UTC)):           # and each send delivered twice more, as a
        for copy in ("x", "y"):                                  # retry or a lost acknowledgement would
            queues.enqueue(redis_conn, queues.PREP, queues.SEND_PREP, due.user_id, due.meeting,
                           due.start.isoformat(), job_id=f"{prep.job_id(due)}-{copy}")
    workers = [start_worker(tmp_path, rt.settings, smtp_inbox.url, f"prep-{n}") for n in range(2)]
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors.decode()[-2000:]

    assert sorted(len(t) for t in ticks) == [0, 1, 1]             # one leader at a time; the second led later
    assert sorted(parseaddr(m["To"])[1] for m in smtp_inbox.messages) == ["u0@example.com", "u1@example.com",
                                                                         "u2@example.com"]
    for n in range(3):
        record = preps_store.get(db, f"user-{n}", f"uid-m{n}", start)
        assert record["status"] == "sent" and record["attempts"] == 1
    finished = queues.get_queue(queues.PREP, redis_conn).finished_job_registry
    results = [queues.get_queue(queues.PREP, redis_conn).fetch_job(j).return_value()
               for j in finished.get_job_ids()]
    assert sorted(r for r in results if isinstance(r, str)) == ["already-handled"] * 6 + ["sent"] * 3
