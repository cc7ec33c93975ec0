"""The Procfile topology, as deployed: release, gunicorn, two rq workers and the scheduler as separate
processes on the MongoDB wire server, real Redis and the emulator.

Two users connect through the real sign-in; 500 random single and recurring changes arrive as
notifications with duplicates and reordering; one worker is SIGKILLed mid-sync (its whole process group;
the worker runs its jobs itself) and replaced, the scheduler is SIGKILLed and restarted, and Graph removes one
subscription. After draining, each user's stored window equals the emulator's truth field by field, no
stored document holds a body, each user got the day's digest exactly once, and stopping leaves no process.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker

from harness.topology import Topology
from harness.waiting import wait_until
from service import queues
from service.config import Settings
from service.store import digests, events
from service.sync import rounds
from tests.support.calendars import Calendar
from tests.support.clock import digest_due_today, local_today, midday_zone
from tests.support.connect import connect_user, emulated_user
from tests.support.serving import OPS_TOKEN
from tests.support.topology import active, differences, digest_tick_done, procfile_topology, ready

OPERATIONS = 500
ROOT = Path(__file__).resolve().parents[2]


def busy_sync_worker(topology: Topology, redis_conn, timeout: float = 20) -> tuple[str, bool]:
    """The topology name of an rq worker running a sync job right now (else any worker), and whether busy."""
    def syncing() -> str | None:
        for worker in Worker.all(connection=redis_conn):
            job = worker.get_current_job()
            if job is not None and job.func_name == queues.SYNC_USER:
                for name in [n for n in topology.running if n.startswith("worker.")]:
                    if worker.pid in topology.pids(name):
                        return name
        return None

    try:
        return wait_until(syncing, timeout=timeout, message="a worker running a sync job"), True
    except AssertionError:
        return next(n for n in topology.running if n.startswith("worker.")), False


@pytest.mark.slow
@pytest.mark.wire
def test_the_procfile_topology_converges_through_a_killed_worker_a_restarted_scheduler_and_a_removed_subscription(
        tmp_path, emulator, mongodb_uri, redis_url, redis_conn, smtp_inbox, db):
    topology, stack = procfile_topology(tmp_path, emulator, mongodb_uri, redis_url, smtp_inbox)
    url, control = stack.url, emulator.control
    rng = random.Random(20261201)
    try:
        released = topology.release()
        assert released.returncode == 0, released.stderr[-2000:]
        assert "user_graph_id" in db.events.index_information()   # release created the indexes
        for kind, index in (("web", 1), ("worker", 1), ("worker", 2), ("scheduler", 1)):
            topology.start(kind, index)
        wait_until(lambda: ready(url), timeout=60, interval=0.5, message="gunicorn")

        people = [emulated_user(stack, mail=f"person{n}@contoso.com") for n in range(2)]
        zone = midday_zone()
        for person in people:
            assert connect_user(stack, person["id"], zone) == person["id"]
            # Due today whatever the weekday or hour, and sent even if the random changes below leave the
            # user no meeting today: "each got today's digest exactly once" does not hang on chance.
            digest_due_today(db, person["id"])
        wait_until(lambda: len(active(control)) == 2, timeout=60, interval=0.5, message="two subscriptions")
        window = rounds.window_for(Settings(), datetime.now(UTC))
        for person in people:
            wait_until(lambda p=person: not differences(db, control, p["id"], window),
                       timeout=60, interval=0.5, message=f"backfill of {person['mail']}")

        control.set_faults(duplicate_rate=0.15, reorder_rate=0.15, seed=11)
        calendars = [Calendar(control, person, rng) for person in people]
        killed, busy = None, False
        for done in range(1, OPERATIONS + 1):
            rng.choice(calendars).step()
            if done == 150:
                killed, busy = busy_sync_worker(topology, redis_conn)
                topology.kill(killed)                       # SIGKILL: the worker, mid-job
                topology.start("worker", 3)                 # the platform starts a replacement
            if done == 220:
                topology.kill("scheduler.1")
                topology.start("scheduler", 2)
            if done == 300:
                owner = f"{people[1]['id']}/events"
                removed = next(s for s in active(control) if s["resource"].endswith(owner))
                control.remove_subscription(removed["id"])  # Graph drops it and says subscriptionRemoved
        control.clear_faults()
        control.wait_idle(timeout=60)
        changed = time.monotonic()

        # A SIGKILLed sync keeps its user's lock until RQ retries its job (about 90 s) or the lock expires.
        for person in people:
            try:
                wait_until(lambda p=person: not differences(db, control, p["id"], window),
                           timeout=240, interval=2, message=f"{person['mail']} to converge")
            except AssertionError as exc:   # name what still differs, so that a failure can be diagnosed
                left = differences(db, control, person["id"], window)
                raise AssertionError(f"{exc}; user {person['id']}: {len(left)} left, {left[:20]}") from None
        wait_until(lambda: {s["userId"] for s in active(control)} ==
                   {p["id"] for p in people} and removed["id"] not in {s["id"] for s in active(control)},
                   timeout=60, interval=0.5, message="a new subscription for the removed one")
        converged = time.monotonic() - changed
        today = local_today(zone).isoformat()
        wait_until(lambda: len(smtp_inbox.messages) >= 2, timeout=120, interval=0.5, message="both digests")
        sent_at = time.time()
        # Another tick ran after both digests went out, and whatever it queued has run: nobody gets a second.
        wait_until(lambda: digest_tick_done(redis_conn, sent_at), timeout=120, interval=0.5,
                   message="another digest tick, and the digests it queued, to finish")

        print(f"topology: killed {killed} (mid-sync: {busy}); converged {converged:.1f}s after the last change; "
              f"{len(db.events.find({}).to_list())} events stored; {len(smtp_inbox.messages)} digests")
        assert killed is not None
        assert sorted(parseaddr(m["To"])[1] for m in smtp_inbox.messages) == sorted(p["mail"] for p in people)
        for person in people:
            assert digests.get(db, person["id"], today)["status"] == "sent"
            assert differences(db, control, person["id"], window) == []
        documents = list(db.events.find({}))
        assert len(documents) > 20
        for doc in documents:
            assert set(doc) <= events.STORED_FIELDS
            assert "SECRET" not in repr(doc) and "Secret room" not in repr(doc)
        # One scrape adds up every process: syncs the workers ran, notifications the web took.
        scraped = scrape(url)
        assert scraped.get(("calsync_jobs_total", "sync_user", "finished"), 0) > 0, scraped
        assert scraped[("calsync_webhook_notifications_total", "accepted")] > 0
        assert scraped[("calsync_graph_request_duration_seconds_count",)] > 0
        assert scraped[("calsync_notification_to_stored_seconds_count",)] > 0
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{topology.tail()}") from None
    finally:
        leftovers = topology.stop()
    assert leftovers == [], leftovers


def scrape(url: str) -> dict:
    """/metrics summed by name and the labels that matter here (function and status, or result)."""
    text = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {OPS_TOKEN}"}, timeout=10).text
    totals: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "calsync_jobs_total":
                key = (sample.name, sample.labels["function"], sample.labels["status"])
            elif sample.name == "calsync_webhook_notifications_total":
                key = (sample.name, sample.labels["result"])
            else:
                key = (sample.name,)
            totals[key] = totals.get(key, 0) + sample.value
    return totals
