"""P2: Graph requests per notification in a burst (10,000 notifications over 100 users).

The notifications go through the real webhook app (Flask test client: parsing, the one-trip Redis script,
the stream), the dispatcher and two RQ workers (threads) running the real sync job against the loopback
fake Graph of the sync tests, which counts every request; MongoDB is mongomock (the store's cost is P3's).
The workers run while the burst arrives, as they would. Baseline: fetching each changed event, one Graph
request per notification.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import redis
import requests

from bench.common import Part
from service import queues, store
from service.app import create_app
from service.config import Settings
from service.graph import GraphClient
from service.runtime import Runtime, install
from service.store import users
from service.store.records import Subscription
from service.subscriptions import mirror
from service.sync import dispatch
from service.workers import jobs
from service.workers.inprocess import ThreadWorker
from tests.support.fakegraph import running_fake_graph

STATE = "bench-client-state-" + "z" * 30


def _sub(n: int) -> Subscription:
    return Subscription(id=f"{n:08d}-0000-4000-8000-{n:012d}", user_id=f"user-{n:03d}", client_state=STATE,
                        expires_at=datetime.now(UTC) + timedelta(days=3))


def run(ctx) -> Part:
    part = Part("P2", "coalescing: Graph requests per notification in a burst")
    user_count = 20 if ctx.figures.get("smoke") else 100
    notifications = 500 if ctx.figures.get("smoke") else 3_000 if ctx.quick else 10_000
    batch = 10                      # notifications per POST (Graph batches them)
    rng = random.Random(6)
    conn = redis.Redis.from_url(ctx.redis_url)
    conn.flushdb()
    db = store.embedded_client()["calsync_bench_p2"]
    store.init_db(db)
    with running_fake_graph() as fake:
        fake.default_page_size = 1000

        def graph_for(user_id: str) -> GraphClient:
            session = requests.Session()
            session.trust_env = False
            return GraphClient(session, f"{fake.url}/v1.0", token=lambda force_refresh=False: f"tok-{user_id}")

        rt = Runtime(Settings(redis_url=ctx.redis_url, data_dir=str(ctx.work / "p2")), db=db, redis_conn=conn,
                     graph_for=graph_for)
        install(rt)
        try:
            subs = [_sub(n) for n in range(user_count)]
            start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            for sub in subs:
                fake.add_user(sub.user_id, f"{sub.user_id}@contoso.example")
                users.upsert_from_graph(db, {"id": sub.user_id, "mail": f"{sub.user_id}@contoso.example"}, "t", "h")
                for day in range(5):
                    fake.create(sub.user_id, start + timedelta(days=day))
                mirror.remember(conn, sub)
                jobs.sync_user(sub.user_id)          # the backfill, before the burst
            event_ids = {s.user_id: list(fake.users[s.user_id].events) for s in subs}
            client = create_app(runtime=rt).test_client()
            stop = threading.Event()
            workers = [threading.Thread(target=_work, args=(ctx.redis_url, stop), daemon=True) for _ in range(2)]
            dispatcher = threading.Thread(target=dispatch.run, args=(redis.Redis.from_url(ctx.redis_url), stop),
                                          daemon=True)
            for thread in (*workers, dispatcher):
                thread.start()
            before, began = fake.requests, time.monotonic()
            sent = 0
            while sent < notifications:
                items = []
                for _ in range(min(batch, notifications - sent)):
                    sub = rng.choice(subs)
                    event_id = rng.choice(event_ids[sub.user_id])
                    fake.update(sub.user_id, event_id, subject=f"burst {sent}")    # the change, then its notification
                    items.append({"subscriptionId": sub.id, "changeType": "updated", "clientState": STATE,
                                  "tenantId": "t", "resource": f"Users/{sub.user_id}/Events/{event_id}",
                                  "resourceData": {"id": event_id}})
                    sent += 1
                answer = client.post("/webhooks/graph", data=json.dumps({"value": items}),
                                     content_type="application/json")
                assert answer.status_code == 202, answer.status_code
            delivered = time.monotonic() - began
            _wait_drained(conn)
            drained = time.monotonic() - began
            stop.set()
            for thread in (*workers, dispatcher):
                thread.join(timeout=15)
            made = fake.requests - before
            stale = sum(1 for s in subs for e in fake.users[s.user_id].events.values()
                        if (db.events.find_one({"user_id": s.user_id, "graph_id": e["id"]}) or {}).get("subject")
                        != e.get("subject"))
        finally:
            install(None)
    part.add("Graph requests per notification", round(made / notifications, 4), "req/notif", 1.0,
             "fetch each changed event", "<= 0.05", made / notifications <= 0.05)
    part.add("Graph requests in the burst", made, "requests", notifications, "notifications")
    part.add("events differing from Graph after draining", stale, "events", target="0", met=stale == 0)
    part.add("burst delivered through the webhook in", round(delivered, 1), "s")
    part.add("queue drained (every user synced) after", round(drained, 1), "s")
    part.notes.append(f"{notifications:,} notifications over {user_count} users, {batch} per POST, "
                      f"2 RQ workers (threads) syncing while the burst arrives; fake Graph on loopback, mongomock")
    conn.flushdb()
    conn.close()
    return part


def _work(url: str, stop: threading.Event) -> None:
    connection = redis.Redis.from_url(url)
    while not stop.is_set():
        worker = ThreadWorker([queues.get_queue(queues.SYNC, connection)], connection=connection)
        worker.work(burst=True, logging_level="ERROR")
        stop.wait(0.05)


def _wait_drained(conn: redis.Redis, timeout: float = 300) -> None:
    queue = queues.get_queue(queues.SYNC, conn)
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        busy = (dispatch.backlog(conn) or queue.count or queue.started_job_registry.count
                or queue.scheduled_job_registry.count or conn.keys("calsync:sync-pending:*"))
        quiet = 0 if busy else quiet + 1
        if quiet >= 5:
            return
        time.sleep(0.1)
    raise RuntimeError("the sync queue did not drain")
