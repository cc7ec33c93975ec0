"""Redis comes back empty under the Procfile topology (release, gunicorn, two rq workers, the scheduler as
processes; the wire server; a redis-server this test starts and FLUSHALLs), and nothing is lost.

While no worker runs, what only Redis holds piles up: notifications acknowledged with 202 (dirty flags, the
request stream, queued syncs), digests the tick took (``next_at`` moved on, the job queued) and outbound
deliveries waiting for their retry. Then Redis is emptied and workers start again. The scheduler notices
within 30 s and rebuilds from MongoDB: within 5 minutes every user's stored window equals Graph's truth, each
user got today's digest exactly once, and every outbound event reached the receiver exactly once.

``CALSYNC_RECOVERY_USERS`` (or ``CALSYNC_CHAOS=long``: 50) sets how many users; the default is 3.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import parseaddr

import pytest
import redis as redis_lib
import requests
from rq import Queue
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from harness.waiting import wait_until
from service.config import Settings
from service.digest import tick as digest_tick
from service.store import digests
from service.sync import rounds
from tests.support.calendars import Calendar
from tests.support.chaos import LONG, RedisServer
from tests.support.clock import digest_due_today, local_today, midday_zone
from tests.support.connect import connect_user, emulated_user
from tests.support.receiver import running_receiver
from tests.support.serving import OPS_TOKEN
from tests.support.topology import active, differences, procfile_topology, ready

pytestmark = [pytest.mark.slow, pytest.mark.wire]

USERS = int(os.environ.get("CALSYNC_RECOVERY_USERS") or (50 if LONG else 3))
DETECT_WITHIN = 30.0
CONVERGE_WITHIN = 300.0


def test_an_emptied_redis_loses_no_change_no_digest_and_no_outbound_event(
        tmp_path, emulator, mongodb_uri, db, smtp_inbox):
    redis_server = RedisServer(tmp_path / "redis")
    topology, stack = procfile_topology(tmp_path, emulator, mongodb_uri, redis_server.url, smtp_inbox,
                                        CALSYNC_OUTBOUND_ALLOW_PRIVATE="1")
    url, control = stack.url, emulator.control
    rng = random.Random(26)
    zone = midday_zone()          # "today" there outlasts the test, whatever the date or hour
    conn = redis_lib.Redis.from_url(redis_server.url)
    try:
        with running_receiver() as receiver:
            assert topology.release().returncode == 0
            for kind, index in (("web", 1), ("worker", 1), ("worker", 2), ("scheduler", 1)):
                topology.start(kind, index)
            wait_until(lambda: ready(url), timeout=60, message="gunicorn")
            endpoint = requests.post(f"{url}/ops/api/webhooks", json={"url": receiver.url, "event_types": [
                "meetings.changed", "digest.sent"]}, headers={"Authorization": f"Bearer {OPS_TOKEN}"}, timeout=30)
            assert endpoint.status_code == 201, endpoint.text

            people = [emulated_user(stack, mail=f"lost{n}@contoso.com") for n in range(USERS)]
            for person in people:
                assert connect_user(stack, person["id"], zone) == person["id"]
            wait_until(lambda: len(active(control)) == USERS, timeout=60 + 3 * USERS, message="every subscription")
            window = rounds.window_for(Settings(), datetime.now(UTC))
            calendars = [Calendar(control, person, rng) for person in people]
            for calendar in calendars:
                calendar.step()
            converge(db, control, people, window, "the backfill", 120 + 6 * USERS)

            # Outbound deliveries back off: the receiver fails one, so the others wait for a retry Redis schedules.
            receiver.statuses.append(503)
            for calendar in calendars:
                calendar.step()
            wait_until(lambda: db.outbound_deliveries.count_documents(
                {"status": "pending", "attempts": {"$gte": 1}}) > 0,
                    timeout=120, message="a delivery waiting for its retry")

            # No worker from here: what arrives now lives only in Redis.
            for name in ("worker.1", "worker.2"):
                topology.kill(name)
            receiver.statuses.clear()
            for person in people:
                digest_due_today(db, person["id"])
            today = local_today(zone).isoformat()
            # The tick is an RQ job and no worker runs: run that same job's body here. It moves each user's
            # next_at on and queues the send_digest job that the loss will take away.
            assert digest_tick.tick(db, conn, Settings(), datetime.now(UTC)) == USERS
            assert db.users.count_documents({"_id": {"$in": [p["id"] for p in people]}, "digest.last_date": today}) \
                == USERS
            control.clear_deliveries()
            for _ in range(3):
                for calendar in calendars:
                    calendar.step()
            control.wait_idle(timeout=60)
            acknowledged = Counter(d.get("outcome") for d in control.deliveries())
            assert db.digests_sent.count_documents({}) == 0
            assert differences_count(db, control, people, window) > 0   # what only Redis knew

            waiting = db.outbound_deliveries.count_documents({"status": "pending", "attempts": {"$gte": 1}})
            assert waiting > 0          # their retries live only in Redis's schedule now
            conn.flushall()
            emptied = time.monotonic()
            detected = wait_until(lambda: lost_since(db), timeout=60, interval=0.5, message="the loss to be noticed")
            detected_after = time.monotonic() - emptied
            topology.start("worker", 3)
            topology.start("worker", 4)
            for calendar in calendars:            # and life goes on: notifications after the loss land too
                calendar.step()
            converge(db, control, people, window, "convergence after the loss", CONVERGE_WITHIN)
            synced_after = time.monotonic() - emptied
            wait_until(lambda: len(smtp_inbox.messages) >= USERS, timeout=CONVERGE_WITHIN, message="every digest")
            mailed_after = time.monotonic() - emptied
            wait_until(lambda: db.outbound_deliveries.count_documents(
                {"status": {"$ne": "delivered"}}) == 0, timeout=CONVERGE_WITHIN, message="every outbound delivery")
            converged_after = time.monotonic() - emptied
            settle_one_more_tick(conn)
            # That tick may emit more events (sweeps added since): none may be lost, so wait for their delivery too.
            wait_until(lambda: {e["_id"] for e in db.outbound_events.find({}, {"_id": 1})} <= {
                webhook_id for webhook_id, status in list(receiver.answered) if 200 <= status < 300},
                timeout=CONVERGE_WITHIN, interval=1, message="every outbound event delivered")

            delivered = Counter(webhook_id for webhook_id, status in receiver.answered if 200 <= status < 300)
            events = {e["_id"] for e in db.outbound_events.find({}, {"_id": 1})}
            counts = (detected.get("recovery") or {}).get("counts")
            print(f"redis emptied: {USERS} users; notifications acknowledged before the loss {dict(acknowledged)}; "
                  f"noticed and recovered after {detected_after:.1f}s ({detected['reason']}); after the loss: "
                  f"calendars equal Graph's at {synced_after:.1f}s, digests out at {mailed_after:.1f}s, every "
                  f"outbound delivery done at {converged_after:.1f}s ({waiting} waiting for the retry the "
                  f"endpoint's 503 earned, rescheduled at its own time); "
                  f"recovery {counts}; {len(events)} outbound events; {len(smtp_inbox.messages)} digests")
            assert acknowledged.get("delivered", 0) > 0
            assert detected_after <= DETECT_WITHIN
            assert converged_after <= CONVERGE_WITHIN
            assert sorted(parseaddr(m["To"])[1] for m in smtp_inbox.messages) == sorted(p["mail"] for p in people)
            for person in people:
                record = digests.get(db, person["id"], today)
                assert record["status"] == "sent" and record["attempts"] == 1, record
            assert set(delivered) == events                                # none lost
            assert max(delivered.values()) == 1, delivered                 # none doubled
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{topology.tail()}") from None
    finally:
        leftovers = topology.stop()
        conn.close()
        redis_server.stop()
    assert leftovers == [], leftovers


def converge(db, control, people, window, what: str, timeout: float) -> None:
    try:
        wait_until(lambda: differences_count(db, control, people, window) == 0, timeout=timeout, interval=2,
                   message=what)
    except AssertionError as exc:
        left = {p["mail"]: differences(db, control, p["id"], window)[:5] for p in people}
        raise AssertionError(f"{exc}: {left}") from None


def differences_count(db, control, people, window) -> int:
    return sum(len(differences(db, control, p["id"], window)) for p in people)


def lost_since(db) -> dict | None:
    """The epoch record once a loss was noticed and its recovery finished."""
    record = db.recovery.find_one({"_id": "redis-epoch", "reason": {"$exists": True}})
    return record if record and (record.get("recovery") or {}).get("status") == "done" else None


def settle_one_more_tick(conn) -> None:
    """Let the digest tick and the outbox sweep run once more after everything was sent, and their jobs finish,
    so that a second send would show."""
    after = time.time()
    for task in ("digest-tick", "outbox-sweep"):
        wait_until(lambda t=task: float(conn.get(f"calsync:scheduler:last:{t}") or 0) > after,
                   timeout=90, message=f"another {task}")
    queues = [Queue(name, connection=conn) for name in ("digest", "outbound")]
    wait_until(lambda: all(
        q.count == 0 and StartedJobRegistry(queue=q).count == 0 and ScheduledJobRegistry(queue=q).count == 0
        for q in queues), timeout=60, message="the digest and outbound queues to drain")
