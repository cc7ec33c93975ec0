"""P3: freshness - a change in the emulator to the event stored in MongoDB - on the Procfile topology.

The Procfile's own lines (release; gunicorn; two ``rq worker`` processes; ``calsync scheduler``, which
also runs the dispatcher) as separate processes over the SecantusDB wire server and this run's Redis,
the emulator (``calsync emulator``, its own process) over HTTPS on loopback delivering real change
notifications. Users connect through the real
sign-in flow; then events are created in their calendars at a fixed rate (the control API, two client
threads), and each event's ``stored_at`` in MongoDB minus its ``lastModifiedDateTime`` in the emulator is
its freshness. Baseline, same run: the wire server's raw upsert rate and latency from one client (what a
single write costs there, before any of calsync's work). Also samples the processes' peak RSS (P6).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pymongo
import redis
import requests

from bench.common import Part, PeakRSS, Processes, percentile, procfile_label, python_env
from bench.servers import start_emulator
from harness.loopback import free_port
from harness.topology import Topology
from harness.waiting import wait_until
from service.cli import demo


def label(pid: int) -> str | None:
    name = procfile_label(pid)
    return f"{name} (P3 load)" if name else None


def raw_upserts(uri: str, seconds: float) -> tuple[float, float, float]:
    """Upserts per second, p50 and p99 ms: one client, one document per write, the events' unique key."""
    client = pymongo.MongoClient(uri, tz_aware=True)
    coll = client.get_default_database()["bench_raw_upserts"]
    coll.create_index([("user_id", 1), ("graph_id", 1)], unique=True)
    times, n = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        coll.update_one({"user_id": f"u{n % 50}", "graph_id": f"g{n}"},
                        {"$set": {"subject": "x", "stored_at": datetime.now(UTC)}}, upsert=True)
        times.append(time.perf_counter() - began)
        n += 1
    coll.drop()
    client.close()
    return n / sum(times), 1000 * percentile(times, 50), 1000 * percentile(times, 99)


def run(ctx) -> Part:
    part = Part("P3", "freshness: emulator change -> stored in MongoDB (Procfile topology, wire server)")
    smoke = ctx.figures.get("smoke")
    user_count, rate, seconds = (3, 10, 2) if smoke else (5, 100, 4) if ctx.quick else (50, 200, 20)
    conn = redis.Redis.from_url(ctx.redis_url)
    conn.flushdb()
    mongodb_uri = ctx.mongodb_uri("calsync_p3")
    upsert_rate, upsert_p50, upsert_p99 = raw_upserts(mongodb_uri, 1.0 if ctx.quick else 3.0)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (ctx.work / "p3-logs").mkdir(exist_ok=True)
    with Processes(ctx.work) as procs:
        emulator = start_emulator(procs, ctx.work / "emulator", python_env())
        env = python_env({
            "MONGODB_URI": mongodb_uri, "REDIS_URL": ctx.redis_url, "CALSYNC_PUBLIC_URL": url,
            "CALSYNC_GRAPH_URL": emulator.graph_url, "CALSYNC_AUTHORITY_HOST": emulator.authority_host,
            "CALSYNC_CA_BUNDLE": emulator.ca_bundle, "CALSYNC_DATA_DIR": str(ctx.work / "p3-var"),
            "CALSYNC_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"), "PORT": str(port),
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}"})
        topology = Topology(env, ctx.work / "p3-logs")
        control = emulator.control
        try:
            released = topology.release()
            if released.returncode != 0:
                raise RuntimeError(f"release failed: {released.stderr[-1000:]}")
            for kind, index in (("web", 1), ("worker", 1), ("worker", 2), ("scheduler", 1)):
                topology.start(kind, index)
            demo.wait_for("gunicorn", lambda: _ready(url), timeout=60)
            tenant = control.create_tenant(display_name="Bench")["id"]
            people = [control.create_user(mail=f"bench{n}@contoso.com", tenant_id=tenant) for n in range(user_count)]
            began = time.monotonic()
            for person in people:
                demo.connect_via_emulator(url, control, person["id"], "UTC").close()
            db = pymongo.MongoClient(mongodb_uri, tz_aware=True).get_default_database()
            demo.wait_for("every subscription", lambda: len([s for s in control.subscriptions()
                                                             if s["status"] == "active"]) >= user_count, 120)
            demo.wait_for("every backfill", lambda: db.users.count_documents(
                {"sync.last_sync_at": {"$ne": None}}) >= user_count, 120)
            connected = time.monotonic() - began
            groups = [r.process.pid for r in topology.running.values()]
            created: list[tuple[str, str, datetime]] = []
            lock = threading.Lock()
            rng = random.Random(3)
            base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)

            def change(n: int) -> None:
                person = people[n % user_count]
                start = base + timedelta(days=rng.randint(0, 20), minutes=30 * rng.randint(0, 16))
                event = control.create_event(person["id"], {
                    "subject": f"bench {n}", "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"),
                                                       "timeZone": "UTC"},
                    "end": {"dateTime": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"),
                            "timeZone": "UTC"}})
                changed = datetime.fromisoformat(event["lastModifiedDateTime"].replace("Z", "+00:00"))
                with lock:
                    created.append((person["id"], event["id"], changed))

            with PeakRSS(groups, label) as sampler, ThreadPoolExecutor(max_workers=4) as pool:
                total = int(rate * seconds)
                load_began, load_began_wall = time.monotonic(), datetime.now(UTC)
                spy = _profile_worker(topology, seconds) if os.environ.get("BENCH_PYSPY") else None
                futures = []
                for n in range(total):
                    delay = load_began + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(change, n))
                for future in futures:
                    future.result()
                offered = total / (time.monotonic() - load_began)
                if spy is not None:
                    spy.wait(timeout=60)
                lags = _wait_stored(db, created, timeout=60 if ctx.quick else 120)
            ctx.memory.update(sampler.peak)
            missing = len(created) - len(lags)
            jobs = _sync_job_times(conn, load_began_wall)
        finally:
            leftovers = topology.stop()
            if os.environ.get("BENCH_KEEP_LOGS"):
                shutil.copytree(ctx.work / "p3-logs", os.environ["BENCH_KEEP_LOGS"], dirs_exist_ok=True)
    conn.flushdb()
    conn.close()
    p50, p99 = percentile(lags, 50), percentile(lags, 99)
    part.add(f"freshness p50 at {offered:.0f} changes/s, {user_count} users", round(p50 * 1000), "ms",
             round(upsert_p50, 2), "one raw upsert (p50)")
    part.add(f"freshness p99 at {offered:.0f} changes/s", round(p99 * 1000), "ms", round(upsert_p99, 2),
             "one raw upsert (p99)", "<= 1000 ms", p99 <= 1.0)
    part.add("changes never stored (within the wait)", missing, "count", target="0", met=missing == 0)
    if jobs["count"]:
        part.add("sync_user jobs run during the load", jobs["count"], "jobs", len(created), "changes")
        part.add("sync_user job run time p50 / p99", round(jobs["run_p50"]), "ms", round(jobs["run_p99"]), "p99")
        part.add("sync_user queue wait p50 / p99", round(jobs["wait_p50"]), "ms", round(jobs["wait_p99"]), "p99")
    part.add("wire server raw upsert rate (1 client)", round(upsert_rate), "upserts/s", rate, "changes/s offered")
    part.add(f"{user_count} users connected, subscribed, backfilled in", round(connected, 1), "s")
    part.add("processes left after stopping the topology", len(leftovers), "count", target="0",
             met=not leftovers)
    part.notes.append(f"{int(rate * seconds)} creates over {seconds}s via the control API (4 client threads); "
                      f"emulator batch window 50 ms; 2 rq workers (jobs in-process), gunicorn 2x4, 1 scheduler")
    return part


def _profile_worker(topology, seconds: float):
    """py-spy on the first rq worker, which runs its jobs itself (BENCH_PYSPY=file: raw stacks go there)."""
    pid = next(p for p in topology.pids("worker.1") if label(p) == "job worker (P3 load)")
    argv = ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)), "--rate", "100",
            "--format", "raw", "--output", os.environ["BENCH_PYSPY"], "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _sync_job_times(conn: redis.Redis, since: datetime) -> dict:
    """Run time and queue wait of the sync_user jobs that finished since ``since`` (RQ keeps their records)."""
    from rq.job import Job
    from rq.registry import FinishedJobRegistry

    from service import queues

    registry = FinishedJobRegistry(queues.SYNC, connection=conn)
    runs, waits = [], []
    for job in Job.fetch_many(registry.get_job_ids(), connection=conn):
        if job is None or job.func_name != queues.SYNC_USER or not job.started_at or not job.ended_at:
            continue
        started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
        if started < since:
            continue
        enqueued = job.enqueued_at if job.enqueued_at.tzinfo else job.enqueued_at.replace(tzinfo=UTC)
        ended = job.ended_at if job.ended_at.tzinfo else job.ended_at.replace(tzinfo=UTC)
        runs.append((ended - started).total_seconds() * 1000)
        waits.append((started - enqueued).total_seconds() * 1000)
    return {"count": len(runs), "run_p50": percentile(runs, 50), "run_p99": percentile(runs, 99),
            "wait_p50": percentile(waits, 50), "wait_p99": percentile(waits, 99)}


def _wait_stored(db, created, timeout: float) -> list[float]:
    """Freshness of every created event, waiting up to ``timeout`` for the stragglers.

    Asks one user at a time through the events' (user_id, graph_id) index: one ``graph_id $in`` over every
    event scans the whole collection, and on SecantusDB that scan held up the workers' own writes for
    seconds, which the bench then measured as their lag.
    """
    lags: dict[str, float] = {}

    def all_stored() -> bool:
        waiting: dict[str, dict[str, datetime]] = {}
        for user_id, graph_id, changed in created:
            if graph_id not in lags:
                waiting.setdefault(user_id, {})[graph_id] = changed
        for user_id, want in waiting.items():
            for doc in db.events.find({"user_id": user_id, "graph_id": {"$in": list(want)}},
                                      {"graph_id": 1, "stored_at": 1}):
                stored = doc["stored_at"]
                stored = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
                lags[doc["graph_id"]] = (stored - want[doc["graph_id"]]).total_seconds()
        return len(lags) >= len(created)

    with contextlib.suppress(AssertionError):   # the stragglers count as not stored (the caller reports them)
        wait_until(all_stored, timeout=timeout, interval=0.5, message="every created event to be stored")
    return list(lags.values())


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
