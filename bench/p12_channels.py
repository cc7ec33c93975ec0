"""P12: N digests delivered through Microsoft Teams and through Slack by real RQ worker processes, against the
minimum the emulated platforms' documented rate limits allow, with one worker SIGKILLed mid-run.

The emulator runs in this process over HTTPS on loopback; two ``rq worker`` processes (the Procfile's worker
class, each in its own process group) run ``deliver_one``: ``service.channels.deliver`` for one person, the
call the digest job makes, with its per-channel claim in ``channel_sends``. The people are first contacts:
Teams installs calsync's app through Graph then posts to the Bot Connector; Slack looks the person up by
email, opens the DM and posts.

Minimums (the emulator's model of the documented limits): Teams, one message per conversation, so the bot's
50 requests a second per app per tenant binds: N / 50 s. Slack: ``chat.postMessage``'s one a second per
channel does not bind with one message per person; ``users.lookupByEmail`` (Tier 4, 100/min) and
``conversations.open`` (Tier 3, 50/min) do. The bench multiplies Slack's limits (the emulator's
``rate_scale``) so conversations.open allows 50 a second like Teams, and the minimum is its token bucket's:
(N - burst) / rate.

Mid-run one worker's process group is SIGKILLed and a replacement started. What the dead worker held, calsync's
workers recover on their own (service.workers.worker): a job it had taken off the queue goes back at its head, a
job it was running is retried once its heartbeat lapses (8 s, looked for every second), and the message claim its
execution held is taken over. The timed figure ends when the emulated platform has a message for every person,
those included (then every claim must say sent). Then it counts, per person, the messages the emulator recorded:
each must be 1. It also measures the at-least-once window (``ambiguity``): from the platform taking a message to
its claim saying "sent", and how many claims were taken over while the platform already had their message (each
of those is sent twice: neither platform offers, within calsync's scopes, a way to ask whether it has it).

``CALSYNC_BENCH_P12_BATCH=8`` (and ``CALSYNC_BENCH_P12_CONCURRENCY``, 8) enqueues one job per 8 people that sends
their messages concurrently (``dispatch.deliver_many``) instead of one job per person: faster on this machine,
but a kill then catches up to 8 messages in flight, and each one the platform had taken is sent again.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from collections import Counter
from datetime import UTC
from pathlib import Path

import redis
from rq import Queue, Worker
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from bench.common import Part, Processes, python_env
from emulator.testing import running_emulator
from harness.topology import group_members
from harness.waiting import wait_until
from service import queues, runtime
from service.channels import dispatch, slack
from service.cli import demo
from service.config import Settings
from service.runtime import Runtime
from service.store import channels as channels_store
from service.store import init_db, users
from service.store.records import User

QUEUE = "bench-channels"
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
INSTALL_ROLE = "TeamsAppInstallation.ReadWriteSelfForUser.All"
TEAMS_PER_TENANT_PER_SECOND = 50
SLACK_OPEN_PER_MINUTE = 50          # conversations.open, Tier 3 (emulator.slack.state.TIERS)
WORKERS = 2
BATCH = int(os.environ.get("CALSYNC_BENCH_P12_BATCH", "1"))   # messages per job; 1: deliver_one, one a job
PROFILE = os.environ.get("CALSYNC_BENCH_P12_PROFILE")   # a directory: one worker runs under cProfile
CONCURRENCY = int(os.environ.get("CALSYNC_BENCH_P12_CONCURRENCY", "8"))   # of a batch's messages, sent at once


def digest(user: User, record: str) -> dispatch.Outgoing:
    """The bench's digest for ``user``: a line of text, as an Adaptive Card and as Block Kit."""
    text = f"Your day, {user.name}: 3 meetings. Prepare for Planning at 10:00."
    card = {"type": "AdaptiveCard", "version": "1.5", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "body": [{"type": "TextBlock", "text": text, "wrap": True}]}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    return dispatch.Outgoing("digest", record, text, card=card, blocks=blocks)


def deliver_one(user_id: str, record: str) -> dict:
    """The job: one person's digest on the channel they chose (the worker's Runtime, calsync's dispatch)."""
    rt = runtime.current()
    user = users.get(rt.db, user_id)
    return dispatch.deliver(rt, user, "digest", digest(user, record))


def deliver_batch(pairs: list[tuple[str, str]], concurrency: int = 1) -> list:
    """The batched job (``CALSYNC_BENCH_P12_BATCH``): several people's digests, ``concurrency`` of them at a time
    (``dispatch.deliver_many``); a failure raises after the others had their try, so that RQ retries the job and
    the ones sent are skipped by their claims."""
    rt = runtime.current()
    people = {doc["_id"]: User.from_doc(doc) for doc in rt.db.users.find({"_id": {"$in": [u for u, _ in pairs]}})}
    items = [(people[user_id], "digest", digest(people[user_id], record)) for user_id, record in pairs]
    results = dispatch.deliver_many(rt, items, concurrency=concurrency)
    failed = next((r for r in results if isinstance(r, Exception)), None)
    if failed is not None:
        raise failed
    return results


def run(ctx) -> Part:
    part = Part("P12", "digests through Teams and Slack vs the platforms' documented rate limits")
    smoke = ctx.figures.get("smoke")
    size = 20 if smoke else 400 if ctx.quick else 10_000
    conn = redis.Redis.from_url(ctx.redis_url)
    conn.flushdb()
    with running_emulator(Path(ctx.work) / "p12-emulator") as emu, Processes(Path(ctx.work)) as procs:
        settings = Settings(public_url="http://127.0.0.1:9", mongodb_uri=ctx.mongodb_uri("calsync_p12"),
                            redis_url=ctx.redis_url, data_dir=str(Path(ctx.work) / "p12"),
                            http_timeout=30.0).with_overrides(**emu.settings_overrides())
        rt = Runtime(settings)
        try:
            init_db(rt.db)
            env = python_env(worker_env(settings))
            for channel in (channels_store.TEAMS, channels_store.SLACK):
                figures = one_channel(ctx, rt, emu, procs, env, channel, size)
                add_rows(part, channel, size, figures)
        finally:
            rt.close()
    part.notes.append(f"{WORKERS} rq worker processes (the Procfile's worker class); first contacts (Teams app "
                      "installed through Graph, Slack DM opened); the emulator runs in the bench process")
    return part


def worker_env(settings: Settings) -> dict[str, str]:
    return {"MONGODB_URI": settings.mongodb_uri, "REDIS_URL": settings.redis_url,
            "CALSYNC_MONGODB_DB": settings.mongodb_db, "CALSYNC_DATA_DIR": settings.data_dir,
            "CALSYNC_PUBLIC_URL": settings.public_url, "CALSYNC_GRAPH_URL": settings.graph_url,
            "CALSYNC_AUTHORITY_HOST": settings.authority_host, "CALSYNC_CA_BUNDLE": settings.ca_bundle,
            "CALSYNC_TEAMS_SERVICE_URL": settings.teams_service_url,
            "CALSYNC_BOTFRAMEWORK_JWKS_URL": settings.botframework_jwks_url,
            "CALSYNC_SLACK_API_URL": settings.slack_api_url, "CALSYNC_HTTP_TIMEOUT": "30",
            "CALSYNC_LOG_LEVEL": "WARNING"}


def people(rt, emu, channel: str, size: int) -> tuple[list[str], dict]:
    """A tenant of ``size`` people choosing ``channel`` for digests, calsync allowed to reach them there."""
    control = emu.control
    tenant = control.create_tenant(display_name=f"Bench {channel}")["id"]
    admin = control.create_user(tenant_id=tenant, mail=f"admin@{channel}.bench.example", roles=[GLOBAL_ADMIN])
    ids = []
    for n in range(size):
        person = control.create_user(tenant_id=tenant, mail=f"p{n:05d}@{channel}.bench.example")
        ids.append(person["id"])
        rt.db.users.insert_one({"_id": person["id"], "email": person["mail"], "display_name": f"Person {n}",
                                "tenant_id": tenant, "entra_id": person["id"], "time_zone": "UTC"})
        channels_store.set_choice(rt.db, person["id"], {"digest": [channel]})
    extra = {}
    if channel == channels_store.TEAMS:
        control.request("POST", "/identity/apps", {
            "client_id": rt.settings.client_id, "client_secret": rt.settings.client_secret,
            "redirect_uris": [f"{rt.settings.public_url}/admin/consent/callback"],
            "roles": ["Calendars.Read", INSTALL_ROLE]})
        consent = (f"{emu.authority_host}/{tenant}/adminconsent?client_id={rt.settings.client_id}"
                   f"&redirect_uri={rt.settings.public_url}/admin/consent/callback&state=bench")
        assert "admin_consent=True" in demo.sign_in_at_emulator(control, consent, admin["id"])
    else:
        emails = [f"p{n:05d}@{channel}.bench.example" for n in range(size)]
        team = control.request("POST", "/slack/workspaces", {"name": "Bench", "emails": emails})
        redirect = f"{rt.settings.public_url}/channels/slack/callback"
        code = emu.emulator.slack.issue_code(team["id"], redirect, ",".join(slack.BOT_SCOPES))
        slack.finish_install(rt, code, redirect, tenant)
        scale = TEAMS_PER_TENANT_PER_SECOND * 60 / SLACK_OPEN_PER_MINUTE
        control.request("POST", "/slack/config", {"rate_scale": scale})   # fresh, full buckets
        extra = {"scale": scale}
    return ids, extra


def one_channel(ctx, rt, emu, procs: Processes, env: dict, channel: str, size: int) -> dict:
    conn = rt.redis
    ids, extra = people(rt, emu, channel, size)
    queue = Queue(QUEUE, connection=conn)
    command = [sys.executable, "-m", "rq.cli", "worker", "-w", "service.workers.worker.Worker", "--url",
               rt.settings.redis_url, "--with-scheduler", QUEUE]
    records = {uid: f"bench-digest:{uid}:{channel}" for uid in ids}
    for n in range(WORKERS):
        profiled = PROFILE and n == WORKERS - 1           # not the one killed: its profile is written at its exit
        argv = [command[0], "-m", "cProfile", "-o", str(Path(PROFILE) / f"worker-{channel}.prof"), *command[1:]] \
            if profiled else command
        procs.start(f"p12-{channel}-worker-{n}", argv, env)
    wait_until(lambda: len(rq_workers(conn)) >= WORKERS, timeout=60, message="the rq workers to start")
    # CPU per message: each worker's process group (the worker and its scheduler) from now on, its start-up left
    # out; this process's (the emulator's threads and the bench's polling); Redis's commands (RQ's and calsync's).
    startup = {name: group_cpu(procs.running[name].pid) for name in procs.running if name.startswith(f"p12-{channel}-")}
    own_cpu, commands = process_cpu(), redis_commands(conn)
    database = getattr(getattr(ctx.mongo, "process", None), "pid", None)      # the bench's SecantusDB wire server
    database_cpu = pid_cpu(database) if database else 0.0

    def sent() -> int:
        return rt.db.channel_sends.count_documents({"_id": {"$regex": f":{channel}$"}, "status": "sent"})

    def delivered() -> int:
        # The people the platform has a message for, as the emulator (in this process) recorded them. The bench
        # polls this every 50 ms: asking calsync's MongoDB (a regex count over every claim) that often cost the
        # database server, which the workers share, several seconds of CPU per run.
        return recipients(emu, channel)

    began = time.perf_counter()
    if BATCH <= 1:
        for uid in ids:
            queue.enqueue(deliver_one, uid, records[uid], retry=queues.DEFAULT_RETRY, job_timeout=120)
    else:
        for start in range(0, len(ids), BATCH):
            queue.enqueue(deliver_batch, [(uid, records[uid]) for uid in ids[start:start + BATCH]], CONCURRENCY,
                          retry=queues.DEFAULT_RETRY, job_timeout=120)
    wait_until(lambda: delivered() >= size // 3, timeout=600, interval=0.05, message="a third of the messages")
    before_kill = delivered() / (time.perf_counter() - began)      # the steady rate, no recovery in it
    victim = f"p12-{channel}-worker-0"
    pgid = procs.running[victim].pid
    victim_cpu = group_cpu(pgid) - startup[victim]
    os.killpg(pgid, signal.SIGKILL)
    killed = time.perf_counter()
    killed_at = time.time()
    wait_until(lambda: not group_members(pgid), timeout=30, message="the killed worker to go")
    procs.running.pop(victim).wait(timeout=10)
    procs.start(f"p12-{channel}-worker-2", command, env)

    retries: set[str] = set()

    def done() -> bool:
        # A transient failure (a timeout under load) is retried by RQ after 10, 60 and 300 s; the bench runs such
        # retries at once and counts them, so the figure is not RQ's intervals. What the killed worker held is
        # the workers' own business (service.workers.worker: requeued or retried at once, its claims taken over).
        retries.update(job.id for job in run_scheduled_now(queue))
        return delivered() >= size

    wait_until(done, timeout=900, interval=0.05, message=f"every {channel} message sent, the killed worker's too")
    elapsed, last_after_kill = time.perf_counter() - began, time.perf_counter() - killed
    wait_until(lambda: sent() >= size, timeout=120, interval=0.2, message="every message's claim to say sent")
    wait_until(lambda: queue.count == 0 and not StartedJobRegistry(QUEUE, connection=conn).get_job_ids(cleanup=False),
               timeout=120, interval=0.1, message="the queue to drain and every job to end")
    taken_over = rt.db.channel_sends.count_documents({"_id": {"$regex": f":{channel}$"}, "attempts": {"$gt": 1}})
    started_up = sum(startup.values()) / len(startup)       # the replacement's start-up: as the first two's
    workers_cpu = victim_cpu + sum(group_cpu(procs.running[name].pid) - startup.get(name, started_up)
                                   for name in procs.running if name.startswith(f"p12-{channel}-"))
    cpu = {"workers_ms": workers_cpu * 1000 / size, "bench_process_ms": (process_cpu() - own_cpu) * 1000 / size,
           "redis_commands": (redis_commands(conn) - commands) / size,
           "database_ms": (pid_cpu(database) - database_cpu) * 1000 / size if database else None}
    for name in [n for n in procs.running if n.startswith(f"p12-{channel}-")]:
        procs.stop(name)
    received = platform_times(rt, emu, channel, ids)
    counts = Counter({uid: len(times) for uid, times in received.items()})
    # One scan of the channel's claims (as ``sent`` counts them): SecantusDB answers an ``_id`` ``$in`` of 10,000
    # ids past the 10 s socket timeout.
    claims_found = {doc["user_id"]: doc for doc in rt.db.channel_sends.find(
        {"_id": {"$regex": f":{channel}$"}}, {"user_id": 1, "attempts": 1, "claimed_at": 1, "finished_at": 1})}
    return {"elapsed": elapsed, "before_kill": before_kill, "taken_over": taken_over, "after_kill": last_after_kill,
            "retries": len(retries), "killed_at": killed_at, "cpu": cpu,
            "counts": [counts.get(uid, 0) for uid in ids], **ambiguity(received, claims_found), **extra}


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of the live processes of process group ``pgid``."""
    return sum(pid_cpu(pid) for pid in group_members(pgid))


def pid_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def redis_commands(conn) -> int:
    return int(conn.info("stats")["total_commands_processed"])


def platform_times(rt, emu, channel: str, ids: list[str]) -> dict[str, list[float]]:
    """Each person's messages as the emulated platform recorded them: the wall-clock times it took them."""
    found: dict[str, list[float]] = {uid: [] for uid in ids}
    if channel == channels_store.TEAMS:
        for activity in emu.emulator.teams.sent():
            found.setdefault(activity["user_id"], []).append(activity["received_at"])
    else:
        members = {uid: m["email"] for team in emu.emulator.slack.teams.values() for uid, m in team["members"].items()}
        by_email = {doc["email"]: doc["_id"] for doc in rt.db.users.find(
            {"email": {"$regex": f"@{channel}\\.bench\\.example$"}}, {"email": 1})}
        for message in list(emu.emulator.slack.messages):
            found.setdefault(by_email.get(members.get(message["user"])), []).append(float(message["ts"]))
    return {uid: sorted(times) for uid, times in found.items()}


def _epoch(when) -> float | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def ambiguity(received: dict[str, list[float]], claims_found: dict[str, dict]) -> dict:
    """The at-least-once window, measured. ``window_ms``: for each message sent once, the time from the platform
    taking it to its claim saying "sent" (the worker's clock as it sends that write; one machine, one clock): a
    worker killed inside it leaves a message the platform has and a claim still "sending". ``ambiguous``: the
    claims taken over (attempts > 1) whose person the platform already had a message for when the retry took the
    claim: each of those is sent again (neither platform can be asked, with calsync's scopes, whether it has it)."""
    windows, ambiguous = [], 0
    for uid, claim in claims_found.items():
        times = received.get(uid) or []
        finished, claimed = _epoch(claim.get("finished_at")), _epoch(claim.get("claimed_at"))
        if len(times) == 1 and finished is not None and claim.get("attempts", 1) == 1:
            windows.append((finished - times[0]) * 1000)
        if claim.get("attempts", 1) > 1 and times and claimed is not None and times[0] < claimed:
            ambiguous += 1
    windows.sort()

    def pick(q: float) -> float | None:
        return round(windows[min(len(windows) - 1, int(q * len(windows)))], 2) if windows else None

    return {"ambiguous": ambiguous, "window_ms": {"p50": pick(0.5), "p99": pick(0.99),
                                                  "max": round(windows[-1], 2) if windows else None,
                                                  "mean": round(sum(windows) / len(windows), 2) if windows else None}}


def recipients(emu, channel: str) -> int:
    """How many distinct people (Teams chats, Slack DMs) the emulated platform has received a message in."""
    if channel == channels_store.TEAMS:
        with emu.emulator.teams.lock:
            return len({a["conversation_id"] for a in emu.emulator.teams.activities})
    return len({m["channel"] for m in list(emu.emulator.slack.messages)})


def rq_workers(conn) -> list:
    return [w for w in Worker.all(connection=conn) if QUEUE in w.queue_names()]


def run_scheduled_now(queue: Queue) -> list[Job]:
    registry = ScheduledJobRegistry(queue.name, connection=queue.connection)
    jobs = [Job.fetch(job_id, connection=queue.connection) for job_id in registry.get_job_ids()]
    for job in jobs:
        registry.remove(job)
        queue.enqueue_job(job)
    return jobs


def minimum_seconds(channel: str, size: int, figures: dict) -> float:
    if channel == channels_store.TEAMS:
        return size / TEAMS_PER_TENANT_PER_SECOND
    per_minute = SLACK_OPEN_PER_MINUTE * figures["scale"]       # the bucket starts full: a minute's worth
    return max(0.0, size - per_minute) / (per_minute / 60)


def add_rows(part: Part, channel: str, size: int, figures: dict) -> None:
    name = dispatch.NAMES[channel]
    minimum = minimum_seconds(channel, size, figures)
    elapsed = figures["elapsed"]
    limit = ("50 requests/s per app per tenant" if channel == channels_store.TEAMS else
             f"conversations.open x{figures['scale']:.0f} (50/s), burst of 3,000")
    if minimum > 0:
        part.add(f"{size:,} digests on {name} (first contacts)", round(elapsed, 2), "s", round(minimum, 2),
                 f"minimum at {limit}", "ratio <= 1.2", elapsed / minimum <= 1.2)
    else:
        part.add(f"{size:,} digests on {name} (first contacts)", round(elapsed, 2), "s", None,
                 f"within the burst of {limit}: no rate minimum", "", None)
    part.add(f"{name}: throughput", round(size / elapsed, 1), "msg/s")
    part.add(f"{name}: throughput before the kill (2 workers, no recovery)", round(figures["before_kill"], 1), "msg/s")
    counts = figures["counts"]
    part.add(f"{name}: people with no message after the kill", sum(1 for c in counts if c == 0), "", 0, "", "0",
             all(c >= 1 for c in counts))
    part.add(f"{name}: people with more than one message", sum(1 for c in counts if c > 1), "", 0, "", "0",
             all(c <= 1 for c in counts))
    part.add(f"{name}: messages lost (no message, a claim may say sent)", sum(1 for c in counts if c == 0), "")
    part.add(f"{name}: messages doubled", sum(c - 1 for c in counts if c > 1), "")
    part.add(f"{name}: ambiguous at the take-over (platform had it, claim not sent)", figures["ambiguous"], "", 0,
             "", "= doubled", figures["ambiguous"] == sum(c - 1 for c in counts if c > 1))
    window = figures["window_ms"]
    part.add(f"{name}: window platform took it -> claim sent, p50", window["p50"], "ms")
    part.add(f"{name}: window platform took it -> claim sent, p99", window["p99"], "ms")
    part.add(f"{name}: window platform took it -> claim sent, max", window["max"], "ms")
    cpu = figures["cpu"]
    part.add(f"{name}: CPU per message, rq workers (start-up left out)", round(cpu["workers_ms"], 2), "ms")
    part.add(f"{name}: CPU per message, bench process (emulator, polling)", round(cpu["bench_process_ms"], 2), "ms")
    if cpu.get("database_ms") is not None:
        part.add(f"{name}: CPU per message, SecantusDB wire server", round(cpu["database_ms"], 2), "ms")
    part.add(f"{name}: Redis commands per message (RQ's, calsync's, bench polling)", round(cpu["redis_commands"], 1),
             "")
    part.add(f"{name}: message claims taken over from the killed worker", figures["taken_over"], "")
    part.add(f"{name}: all sent, seconds after the kill", round(figures["after_kill"], 1), "s")
    part.add(f"{name}: jobs retried during the run (run at once, not after RQ's interval)", figures["retries"], "")
