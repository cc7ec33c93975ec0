"""P2: Graph requests per notification in a burst (10,000 notifications over 100 users).

The notifications go through the real webhook app (Flask test client: parsing, the one-trip Redis script,
the stream), the dispatcher and two RQ workers (threads) running the real sync job against the Graph
emulator (in this process, over HTTPS on loopback), whose request log counts every Graph request; MongoDB is
mongomock (the store's cost is P3's). Each change is made in the emulator's state (as its control API
does, without the HTTPS round trip, so the burst arrives as fast as with Graph), then notified.
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
from emulator.testing import running_emulator
from harness.waiting import wait_until
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

STATE = "bench-client-state-" + "z" * 30


def _sub(n: int, user_id: str) -> Subscription:
    return Subscription(id=f"{n:08d}-0000-4000-8000-{n:012d}", user_id=user_id, client_state=STATE,
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
    with running_emulator(ctx.work / "p2-emulator") as graph:
        control = graph.control
        tenant = control.create_tenant(display_name="Bench")
        tokens: dict[str, str] = {}

        def graph_for(user_id: str) -> GraphClient:
            session = requests.Session()
            session.trust_env, session.verify = False, graph.ca_bundle
            return GraphClient(session, graph.graph_url, token=lambda force_refresh=False: tokens[user_id])

        rt = Runtime(Settings(redis_url=ctx.redis_url, data_dir=str(ctx.work / "p2"), **graph.settings_overrides()),
                     db=db, redis_conn=conn, graph_for=graph_for)
        install(rt)
        try:
            subs, subjects = [], {}
            start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            for n in range(user_count):
                person = control.create_user(tenant_id=tenant["id"], mail=f"user-{n:03d}@contoso.example")
                tokens[person["id"]] = control.token(user_id=person["id"])
                sub = _sub(n, person["id"])
                subs.append(sub)
                users.upsert_from_graph(db, {"id": sub.user_id, "mail": person["mail"]}, tenant["id"], "h")
                bodies = [_event(f"Meeting {n}.{day}", start + timedelta(days=day)) for day in range(5)]
                made = control.create_events(sub.user_id, bodies)
                subjects |= {(sub.user_id, event["id"]): body["subject"]
                             for event, body in zip(made, bodies, strict=True)}
                mirror.remember(conn, sub)
                jobs.sync_user(sub.user_id)          # the backfill, before the burst
            event_ids = {s.user_id: [e for u, e in subjects if u == s.user_id] for s in subs}
            client = create_app(runtime=rt).test_client()
            stop = threading.Event()
            workers = [threading.Thread(target=_work, args=(ctx.redis_url, stop), daemon=True) for _ in range(2)]
            dispatcher = threading.Thread(target=dispatch.run, args=(redis.Redis.from_url(ctx.redis_url), stop),
                                          daemon=True)
            for thread in (*workers, dispatcher):
                thread.start()
            graph.emulator.clear_requests()
            began = time.monotonic()
            sent = 0
            while sent < notifications:
                items = []
                for _ in range(min(batch, notifications - sent)):
                    sub = rng.choice(subs)
                    event_id = rng.choice(event_ids[sub.user_id])
                    subjects[(sub.user_id, event_id)] = f"burst {sent}"
                    graph.emulator.state.update_event(sub.user_id, event_id, {"subject": f"burst {sent}"})
                    items.append({"subscriptionId": sub.id, "changeType": "updated", "clientState": STATE,
                                  "tenantId": tenant["id"], "resource": f"Users/{sub.user_id}/Events/{event_id}",
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
            made = sum(1 for r in graph.emulator.requests_log() if r["path"].startswith("/v1.0/"))
            stale = sum(1 for (user_id, event_id), subject in subjects.items()
                        if (db.events.find_one({"user_id": user_id, "graph_id": event_id}) or {}).get("subject")
                        != subject)
        finally:
            install(None)
    part.add("Graph requests per notification", round(made / notifications, 4), "req/notif", 1.0,
             "fetch each changed event", "<= 0.05", made / notifications <= 0.05)
    part.add("Graph requests in the burst", made, "requests", notifications, "notifications")
    part.add("events differing from Graph after draining", stale, "events", target="0", met=stale == 0)
    part.add("burst delivered through the webhook in", round(delivered, 1), "s")
    part.add("queue drained (every user synced) after", round(drained, 1), "s")
    part.notes.append(f"{notifications:,} notifications over {user_count} users, {batch} per POST, "
                      f"2 RQ workers (threads) syncing while the burst arrives; the Graph emulator over HTTPS on "
                      f"loopback (each change made in its state first), mongomock")
    conn.flushdb()
    conn.close()
    return part


def _event(subject: str, start: datetime) -> dict:
    return {"subject": subject, "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}}


def _work(url: str, stop: threading.Event) -> None:
    connection = redis.Redis.from_url(url)
    while not stop.is_set():
        worker = ThreadWorker([queues.get_queue(queues.SYNC, connection)], connection=connection)
        worker.work(burst=True, logging_level="ERROR")
        stop.wait(0.05)


def _wait_drained(conn: redis.Redis, timeout: float = 300) -> None:
    """Until nothing is waiting, queued, running or scheduled for the sync queue, five looks in a row."""
    queue = queues.get_queue(queues.SYNC, conn)
    quiet = 0

    def drained() -> bool:
        nonlocal quiet
        busy = (dispatch.backlog(conn) or queue.count or queue.started_job_registry.count
                or queue.scheduled_job_registry.count or conn.keys("calsync:sync-pending:*"))
        quiet = 0 if busy else quiet + 1
        return quiet >= 5

    wait_until(drained, timeout=timeout, interval=0.1, message="the sync queue to drain")
