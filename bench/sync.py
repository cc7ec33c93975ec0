"""Sync benchmark: Graph requests per notification in a burst, and change-to-stored latency under load.

    python bench/sync.py [--users 100] [--notifications 10000] [--rates 50,200] [--seconds 20] [--workers 4]

Runs against the loopback fake Graph from the sync tests, an embedded redis-server (so no shared
database is touched), mongomock, and real RQ workers in threads. A notification is what the webhook
receiver turns every verified change notification into: ``request_sync(rt, user_id, reason)``.

Everything shares one Python process, and mongomock's updates scan the whole collection, so at high
rates this measures mongomock's saturation as much as the design: the script prints the store's cost
per applied event at the collection's final size, and measures latency at a rate the process sustains
(the pipeline's own latency) as well as at the target rate.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mongomock
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service import runtime, store  # noqa: E402
from service.config import Settings  # noqa: E402
from service.embedded import start_embedded_redis  # noqa: E402
from service.graph import GraphClient  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.store import users  # noqa: E402
from service.workers import jobs, queues, sync  # noqa: E402
from service.workers.inprocess import ThreadWorker  # noqa: E402
from tests.workers.fakegraph import running_fake_graph  # noqa: E402

IDLE_SECONDS = 3


def setup(fake, url: str, data_dir: str, user_count: int) -> Runtime:
    db = mongomock.MongoClient(tz_aware=True)["calsync_bench"]
    store.init_db(db)
    rt = Runtime(Settings(redis_url=url, data_dir=data_dir), db=db, redis_conn=redis.Redis.from_url(url))
    runtime.install(rt)
    fake.default_page_size = 1000   # let our Prefer: odata.maxpagesize decide, as Graph does

    def graph_client(rt, user_id):
        session = requests.Session()
        session.trust_env = False
        return GraphClient(session, f"{fake.url}/v1.0", token=lambda force_refresh=False: f"tok-{user_id}")

    sync.graph_client = graph_client
    for n in range(user_count):
        user_id = f"user-{n:03d}"
        fake.add_user(user_id, f"{user_id}@contoso.example")
        users.upsert_from_graph(db, {"id": user_id, "mail": f"{user_id}@contoso.example"}, "t", "h")
        for day in range(5):
            fake.create(user_id, _when(day))
    return rt


def _when(day: float) -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=day, hours=1)


def start_workers(url: str, count: int) -> list[threading.Thread]:
    """Long-running RQ workers in threads; each stops after a few idle seconds at the end."""

    def work() -> None:
        connection = redis.Redis.from_url(url)
        worker = ThreadWorker([queues.get_queue(queues.SYNC, connection)], connection=connection)
        worker.work(burst=False, with_scheduler=True, logging_level="ERROR", max_idle_time=IDLE_SECONDS)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def wait_drained(rt: Runtime, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    sync_queue = queues.get_queue(queues.SYNC, rt.redis)
    while time.monotonic() < deadline:
        busy = sync_queue.count or sync_queue.started_job_registry.count or sync_queue.scheduled_job_registry.count
        if not busy:
            return
        time.sleep(0.05)
    raise SystemExit("the sync queue did not drain")


def burst(rt: Runtime, fake, user_count: int, notifications: int, url: str, workers: int) -> list:
    """Backfill every user, deliver the burst, then let the workers drain it; returns the worker threads."""
    user_ids = list(fake.users)[:user_count]
    event_ids = {user_id: list(fake.users[user_id].events) for user_id in user_ids}
    for user_id in user_ids:
        jobs.sync_user(user_id)
    changes = [random.choice(user_ids) for _ in range(notifications)]
    for n, user_id in enumerate(changes):   # the calendar changes first; their notifications arrive as a burst
        fake.update(user_id, random.choice(event_ids[user_id]), subject=f"burst {n}")
    before, started = fake.requests, time.monotonic()
    for user_id in changes:
        jobs.request_sync(rt, user_id, "notification")
    sent = time.monotonic() - started
    threads = start_workers(url, workers)   # a burst outpaces any sync round: it is all queued when they start
    wait_drained(rt)
    elapsed = time.monotonic() - started
    made = fake.requests - before
    print(f"burst: {notifications} notifications over {user_count} users in {sent:.1f}s, drained in {elapsed:.1f}s")
    print(f"burst: {made} Graph requests -> {made / notifications:.4f} requests per notification (aim <= 0.05)")
    return threads


def latency(rt: Runtime, fake, rate: float, seconds: float, workers: int) -> None:
    user_ids = list(fake.users)
    created: list[tuple[str, str]] = []
    interval, start = 1.0 / rate, time.monotonic()
    for n in range(int(rate * seconds)):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        user_id = random.choice(user_ids)
        created.append((user_id, fake.create(user_id, _when(random.uniform(0, 20)))))
        jobs.request_sync(rt, user_id, "notification")
    achieved = len(created) / (time.monotonic() - start)
    wait_drained(rt)
    lags = []
    for user_id, event_id in created:
        doc = rt.db.events.find_one({"user_id": user_id, "graph_id": event_id})
        if doc is None:
            raise SystemExit(f"event {event_id} of {user_id} was never stored")
        changed = fake.users[user_id].events[event_id]["last_modified"]
        lags.append((store.as_utc(doc["stored_at"]) - changed).total_seconds())
    lags.sort()
    p50, p99 = statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(f"latency: {len(created)} changes at {achieved:.0f}/s with {workers} workers: "
          f"change->stored p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")


def store_cost(rt: Runtime, samples: int = 50) -> None:
    """What one applied event costs in this store now (mongomock: grows with the collection)."""
    from service.store import events

    doc = rt.db.events.find_one({})
    item = {"id": doc["graph_id"], "subject": "probe", "start": {"dateTime": "2030-01-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-01T11:00:00", "timeZone": "UTC"}}
    started = time.perf_counter()
    for n in range(samples):
        stamp = (datetime.now(UTC) + timedelta(days=1, seconds=n)).isoformat().replace("+00:00", "Z")
        events.apply_changes(rt.db, doc["user_id"], [{**item, "lastModifiedDateTime": stamp, "changeKey": str(n)}],
                             datetime.now(UTC))
    per = (time.perf_counter() - started) / samples
    print(f"store: {per * 1000:.2f} ms per applied event with {rt.db.events.estimated_document_count()} stored "
          f"(mongomock scans the collection; MongoDB uses the unique (user_id, graph_id) index)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--notifications", type=int, default=10_000)
    parser.add_argument("--rates", default="50,200", help="comma-separated changes per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    for noisy in ("werkzeug", "rq", "service", "mongomock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    random.seed(6)
    with tempfile.TemporaryDirectory() as tmp, running_fake_graph() as fake:
        embedded = start_embedded_redis(Path(tmp, "redis"))
        try:
            rt = setup(fake, embedded.url, tmp, args.users)
            threads = burst(rt, fake, args.users, args.notifications, embedded.url, args.workers)
            for rate in (float(r) for r in args.rates.split(",")):
                latency(rt, fake, rate, args.seconds, args.workers)
            store_cost(rt)
            for thread in threads:
                thread.join(timeout=IDLE_SECONDS + 10)
        finally:
            runtime.install(None)
            embedded.stop()


if __name__ == "__main__":
    main()
