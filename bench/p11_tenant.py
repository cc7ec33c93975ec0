"""P11: a tenant enrolled at once: directory sync (users/delta), each mailbox probed, its subscription created
and its first sync, against the minimum Graph's documented limits allow.

In one process, as the test suite runs it: the emulator over HTTPS on loopback, calsync served on a loopback
port (Graph's validation handshake reaches it), the SecantusDB wire server and this run's Redis, and RQ's
in-process worker draining the queues (one worker; the Procfile runs two). The binding documented limit is
the subscription service's writes per app per tenant (throttling-limits, "Subscription service limits"; its
versions list 500, 1,000 and 2,000 requests per 20 seconds: the bench takes 1,000); Outlook's 4 concurrent
requests per mailbox do not bind when each mailbox needs a handful of requests. Sizes: 20,000 mailboxes is the
target; the run enrols fewer on this machine and projects linearly (each mailbox's work is independent).
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from pathlib import Path

import redis
from rq.job import Job
from rq.registry import FinishedJobRegistry
from werkzeug.serving import make_server

from bench.common import Part
from emulator.testing import running_emulator
from harness.loopback import Deferred
from service import queues
from service.app import create_app
from service.cli import demo
from service.config import Settings
from service.runtime import Runtime, install
from service.store import init_db, tenantwide
from service.workers.inprocess import work_burst

TARGET = 20_000
SUBSCRIPTION_WRITES_PER_20_S = 1_000
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"


def job_seconds(conn) -> dict[str, tuple[int, float]]:
    """Finished jobs by entry point: how many and the seconds they ran (RQ's own start and end times)."""
    spent: dict[str, tuple[int, float]] = {}
    for name in queues.ALL:
        queue = queues.get_queue(name, conn)
        for job in Job.fetch_many(FinishedJobRegistry(queue=queue).get_job_ids(), connection=conn):
            if job is None or not job.started_at or not job.ended_at:
                continue
            key = job.func_name.rsplit(".", 1)[-1]
            count, seconds = spent.get(key, (0, 0.0))
            spent[key] = (count + 1, seconds + (job.ended_at - job.started_at).total_seconds())
    return spent


def run(ctx) -> Part:
    part = Part("P11", "a tenant enrolled at once: directory, probe, subscription, first sync")
    size = int(os.environ.get("CALSYNC_BENCH_TENANT_SIZE") or (20 if ctx.figures.get("smoke") else
                                                                200 if ctx.quick else 2_000))
    conn = redis.Redis.from_url(ctx.redis_url)
    conn.flushdb()
    logging.getLogger("service").setLevel(logging.ERROR)
    with running_emulator(Path(ctx.work) / "p11-emulator", time_scale=0.01) as emu:
        control = emu.control
        tenant = control.create_tenant(display_name="Bench")["id"]
        admin = control.create_user(tenant_id=tenant, mail="admin@bench.example", roles=[GLOBAL_ADMIN])
        made_at = time.perf_counter()
        for n in range(size - 1):
            control.create_user(tenant_id=tenant, mail=f"m{n:05d}@bench.example")
        setup = time.perf_counter() - made_at

        holder = Deferred()
        server = make_server("127.0.0.1", 0, holder, threaded=True)
        url = f"http://127.0.0.1:{server.server_port}"
        settings = Settings(public_url=url, mongodb_uri=ctx.mongodb_uri("calsync_p11"), redis_url=ctx.redis_url,
                            data_dir=str(Path(ctx.work) / "p11"), authority_host=emu.authority_host,
                            graph_url=emu.graph_url, ca_bundle=emu.ca_bundle)
        rt = Runtime(settings)
        init_db(rt.db)
        install(rt)
        holder.app = create_app(runtime=rt)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            consent = (f"{emu.authority_host}/{tenant}/adminconsent?client_id={settings.client_id}"
                       f"&redirect_uri={url}/admin/consent/callback&state=bench")
            demo.sign_in_at_emulator(emu.control, consent, admin["id"])
            tenantwide.update_settings(rt.db, tenant, {"mode": "tenant_wide"})
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            began = time.perf_counter()
            rt.tenant_wide.sync_directory(tenant)
            directory = time.perf_counter() - began
            while work_burst(rt.redis):
                pass
            total = time.perf_counter() - began
            subscribed = rt.db.subscriptions.count_documents({})
            synced = rt.db.users.count_documents({"tenant_id": tenant, "sync.last_sync_at": {"$ne": None}})
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            spent = job_seconds(rt.redis)
        finally:
            server.shutdown()
            thread.join(timeout=5)
            install(None)
            rt.close()
    minimum = size / (SUBSCRIPTION_WRITES_PER_20_S / 20)
    ratio = total / minimum
    scale = TARGET / size
    part.add(f"{size:,} mailboxes: directory + probe + subscription + first sync", round(total, 1), "s",
             round(minimum, 1), "Graph's minimum (subscription writes per app per tenant)", "ratio <= 1.2",
             ratio <= 1.2)
    part.add(f"{TARGET:,} mailboxes, projected", round(total * scale, 1), "s", round(TARGET / 50, 1),
             "Graph's minimum (1,000 writes / 20 s)", "ratio <= 1.2", ratio <= 1.2)
    part.add("directory sync (users/delta, enrolment, jobs queued)", round(directory, 2), "s")
    part.add("mailboxes subscribed", subscribed, "", size, "enrolled", "all", subscribed == size)
    part.add("mailboxes synced", synced, "", size, "enrolled", "all", synced == size)
    part.add("peak RSS of the process (emulator, web, worker together)", round(peak, 1), "MB",
             round(rss_before, 1), "before enrolment")
    for name, (count, seconds) in sorted(spent.items()):
        part.add(f"job {name}: mean of {count}", round(1000 * seconds / max(count, 1), 1), "ms")
    part.notes.append(f"one in-process RQ worker; {setup:.1f} s to create the tenant's users in the emulator "
                      "(not timed); the emulator, the web app and the worker share this process and its cores")
    return part
