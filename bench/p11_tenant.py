"""P11: a tenant enrolled at once: directory sync (users/delta), each mailbox probed, its subscription created
and its first sync, against the minimum Graph's documented limits allow.

On the Procfile topology, as calsync is deployed: the release, gunicorn, ``rq worker`` processes (the
Procfile's worker line, started ``CALSYNC_BENCH_P11_WORKERS`` times, 4 by default) and ``calsync scheduler``
(which also runs the sync dispatcher), over the SecantusDB wire server and this run's Redis; the emulator is
its own process (``calsync emulator``, as Graph is: its work never competes with calsync's GIL) and enforces
Graph's documented limits (429 + Retry-After): Outlook's 4 concurrent requests and 10,000 requests per 10
minutes per app and mailbox, and the subscription service's writes per app and tenant. The timing starts when
the admin's tenant-wide switch queues the directory job and ends when every mailbox has had its first sync.

The binding limit is the subscription service's writes per app per tenant (throttling-limits, "Subscription
service limits"; its revisions list 500, 1,000 and 2,000 requests per 20 seconds: calsync, the emulator and
this bench take 1,000): one create per mailbox, so the minimum is size / 50 per second. Outlook's per-mailbox
limits do not bind (each mailbox needs a handful of requests). Sizes: 20,000 mailboxes is the target
(``CALSYNC_BENCH_TENANT_SIZE``); quick runs enrol fewer and project linearly (each mailbox's work is
independent, and the pace per tenant is constant).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pymongo
import redis
import requests
from rq.job import Job
from rq.registry import FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from bench.common import Part, PeakRSS, Processes, procfile_label, python_env
from bench.servers import start_emulator
from harness.loopback import free_port
from harness.topology import Topology, group_members
from harness.waiting import wait_until
from service import queues
from service.cli import demo
from service.config import DEV_CLIENT_ID
from service.store import tenantwide

TARGET = 20_000
SUBSCRIPTION_WRITES_PER_20_S = 1_000
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
LIMITS = {"web worker": 120.0, "job worker": 150.0}   # P6's limits (bench/__main__.py memory_part)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def cpu_by_label(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by every process of some process groups, summed per label."""
    out: dict[str, float] = {}
    for fixed, pgids in groups.items():
        for pid in group_members(*pgids):
            name = fixed or procfile_label(pid)
            if name:
                out[name] = out.get(name, 0.0) + cpu_seconds(pid)
    return out


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stages(conn: redis.Redis, since: datetime) -> dict[str, dict]:
    """Per entry point: jobs finished since ``since``, their mean run time, first start and last end."""
    out: dict[str, dict] = {}
    for name in queues.ALL:
        queue = queues.get_queue(name, conn)
        for job in Job.fetch_many(FinishedJobRegistry(queue=queue).get_job_ids(), connection=conn):
            if job is None or not job.started_at or not job.ended_at or _aware(job.started_at) < since:
                continue
            key = job.func_name.rsplit(".", 1)[-1]
            entry = out.setdefault(key, {"count": 0, "seconds": 0.0, "first": None, "last": None})
            started, ended = _aware(job.started_at), _aware(job.ended_at)
            entry["count"] += 1
            entry["seconds"] += (ended - started).total_seconds()
            entry["first"] = min(entry["first"] or started, started)
            entry["last"] = max(entry["last"] or ended, ended)
    return out


def redis_usage(conn: redis.Redis) -> tuple[float, int]:
    """(CPU seconds, commands processed) of the Redis server so far: the bench's own redis-server serves only
    this run (with ``CALSYNC_BENCH_REDIS_URL``, whatever else uses that server is counted too)."""
    cpu = conn.info("cpu")
    commands = sum(int(stat.get("calls", 0)) for stat in conn.info("commandstats").values())
    return float(cpu.get("used_cpu_user", 0)) + float(cpu.get("used_cpu_sys", 0)), commands


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def run(ctx) -> Part:
    part = Part("P11", "a tenant enrolled at once: directory, probe, subscription, first sync (Procfile topology)")
    smoke = ctx.figures.get("smoke")
    size = int(os.environ.get("CALSYNC_BENCH_TENANT_SIZE") or (20 if smoke else 200 if ctx.quick else 2_000))
    workers = int(os.environ.get("CALSYNC_BENCH_P11_WORKERS") or (2 if smoke else 4))
    # Graph's write limit for the run, in the emulator and in calsync's pace alike: lower it to see the pacing
    # bind (several workers, one shared schedule) on a machine too small to reach Graph's own rate.
    writes = int(os.environ.get("CALSYNC_BENCH_P11_WRITES_PER_20_S") or SUBSCRIPTION_WRITES_PER_20_S)
    conn = redis.Redis.from_url(ctx.redis_url)
    conn.flushdb()
    mongodb_uri = ctx.mongodb_uri("calsync_p11")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs = ctx.work / "p11-logs"
    logs.mkdir(exist_ok=True)
    procs_dir = ctx.work / "p11-procs"
    procs_dir.mkdir(exist_ok=True)
    with Processes(procs_dir) as procs:
        emulator = start_emulator(procs, ctx.work / "p11-emulator", python_env())
        control = emulator.control
        env = python_env({
            "MONGODB_URI": mongodb_uri, "REDIS_URL": ctx.redis_url, "CALSYNC_PUBLIC_URL": url,
            "CALSYNC_GRAPH_URL": emulator.graph_url, "CALSYNC_AUTHORITY_HOST": emulator.authority_host,
            "CALSYNC_CA_BUNDLE": emulator.ca_bundle, "CALSYNC_DATA_DIR": str(ctx.work / "p11-var"),
            "CALSYNC_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"), "PORT": str(port),
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}", "CALSYNC_SUBSCRIPTION_WRITES_PER_20_S": str(writes)})
        control.set_limits(subscription_writes_per_20_seconds=writes)
        topology = Topology(env, logs)
        db_client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
        db = db_client.get_default_database()
        try:
            released = topology.release()
            if released.returncode != 0:
                raise RuntimeError(f"release failed: {released.stderr[-1000:]}")
            tenant = control.create_tenant(display_name="Bench")["id"]
            admin = control.create_user(tenant_id=tenant, mail="admin@bench.example", roles=[GLOBAL_ADMIN])
            made_at = time.perf_counter()
            for n in range(size - 1):
                control.create_user(tenant_id=tenant, mail=f"m{n:05d}@bench.example")
            setup = time.perf_counter() - made_at
            for kind, index in [("web", 1), ("scheduler", 1)] + [("worker", n + 1) for n in range(workers)]:
                topology.start(kind, index)
            demo.wait_for("gunicorn", lambda: _ready(url), timeout=60)
            consent = (f"{emulator.authority_host}/{tenant}/adminconsent?client_id={DEV_CLIENT_ID}"
                       f"&redirect_uri={url}/admin/consent/callback&state=bench")
            demo.sign_in_at_emulator(control, consent, admin["id"])
            tenantwide.update_settings(db, tenant, {"mode": "tenant_wide"})
            groups = [r.process.pid for r in topology.running.values()]
            accounted = {"": groups, "emulator (Graph)": [procs.running["emulator"].pid]}
            if ctx.mongo is not None and ctx.mongo.process is not None:
                accounted["SecantusDB"] = [ctx.mongo.process.pid]
            cpu_before = cpu_by_label(accounted)
            redis_before = redis_usage(conn)
            with PeakRSS(groups, procfile_label) as sampler:
                began_wall, began = datetime.now(UTC), time.perf_counter()
                busy = [queues.get_queue(name, conn) for name in (queues.MAINTENANCE, queues.SUBSCRIPTIONS,
                                                                   queues.SYNC)]
                queues.enqueue(conn, queues.MAINTENANCE, queues.TENANT_DIRECTORY_SYNC, tenant)

                def all_synced() -> bool:
                    # Redis first (cheap): the MongoDB count scans the tenant's users on the wire server, which
                    # at thousands of mailboxes, four times a second, would be a load of the bench's own.
                    if any(len(q) or StartedJobRegistry(queue=q).count or ScheduledJobRegistry(queue=q).count
                           for q in busy):
                        return False
                    return db.users.count_documents({"tenant_id": tenant,
                                                     "sync.last_sync_at": {"$ne": None}}) >= size

                wait_until(all_synced, timeout=60 + size * 0.5, interval=0.25,
                           message=f"{size} mailboxes synced\n{topology.tail()}")
                total = time.perf_counter() - began
                cpu_after = cpu_by_label(accounted)
                redis_after = redis_usage(conn)
            subscribed = db.subscriptions.count_documents({"tenant_id": tenant})
            synced = db.users.count_documents({"tenant_id": tenant, "sync.last_sync_at": {"$ne": None}})
            spent = stages(conn, began_wall)
            limits = control.limits()
        finally:
            leftovers = topology.stop()
            db_client.close()
    conn.flushdb()
    conn.close()
    minimum = size / (writes / 20)
    ratio = total / minimum
    part.add(f"{size:,} mailboxes: directory + probe + subscription + first sync", round(total, 2), "s",
             round(minimum, 2), f"Graph's minimum ({writes:,} subscription writes / 20 s per app per tenant)",
             "ratio <= 1.2", ratio <= 1.2)
    part.add(f"{TARGET:,} mailboxes, projected", round(total * TARGET / size, 1), "s",
             round(TARGET / (writes / 20), 1), "Graph's minimum", "ratio <= 1.2", ratio <= 1.2)
    for name, what in (("tenant_directory_sync", "directory sync (users/delta, enrolment, jobs queued)"),
                       ("tenant_enrol_mailboxes", "enrolment jobs of 20 mailboxes: probes ($batch), subscriptions, "
                        "first syncs (first start to last end)"),
                       ("tenant_enrol_mailbox", "probe + subscription (first start to last end)"),
                       ("sync_user", "first syncs (first start to last end)")):
        entry = spent.get(name)
        if entry:
            part.add(f"stage: {what}", round((entry["last"] - entry["first"]).total_seconds(), 2), "s")
            part.add(f"  job {name}: mean of {entry['count']}", round(1000 * entry["seconds"] / entry["count"], 1),
                     "ms")
    part.add("mailboxes subscribed", subscribed, "", size, "enrolled", "all", subscribed == size)
    part.add("mailboxes synced", synced, "", size, "enrolled", "all", synced == size)
    throttled = limits["throttled"]
    part.add("429s from Graph (subscription writes; mailbox limits)",
             throttled.get("SubscriptionWriteRate", 0) + throttled.get("MailboxConcurrency", 0)
             + throttled.get("MailboxRequestRate", 0), "count")
    peak_writes = max((t["peak_writes_per_20_seconds"] for t in limits.get("tenants", [])), default=0)
    part.add("most subscription writes in one 20 s window", peak_writes, "", writes, "Graph's limit", "<= limit",
             peak_writes <= writes)
    for name, value in sorted(sampler.peak.items()):
        limit = LIMITS.get(name)
        part.add(f"peak RSS, {name}", round(value, 1), "MB", limit, "P6 limit" if limit else "",
                 f"<= {limit:.0f} MB" if limit else "", value <= limit if limit else None)
    for name in sorted(cpu_after, key=lambda n: -(cpu_after[n] - cpu_before.get(n, 0.0))):
        used = cpu_after[name] - cpu_before.get(name, 0.0)
        part.add(f"CPU during enrolment, {name}", round(1000 * used / size, 1), "ms/mailbox")
    part.add("CPU during enrolment, Redis (INFO cpu)", round(1000 * (redis_after[0] - redis_before[0]) / size, 1),
             "ms/mailbox")
    part.add("Redis commands per mailbox (INFO commandstats; RQ's included)",
             round((redis_after[1] - redis_before[1]) / size, 1), "count")
    part.add("processes left after stopping the topology", len(leftovers), "count", target="0", met=not leftovers)
    part.notes.append(f"{workers} rq worker processes, gunicorn 2x4, 1 scheduler; the emulator, SecantusDB and "
                      f"Redis in their own processes, all on this machine's {os.cpu_count()} cores; {setup:.1f} s to "
                      "create the tenant's users in the emulator (not timed)")
    return part
