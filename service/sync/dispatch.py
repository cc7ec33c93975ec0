"""The dispatcher: moves the webhook's coalesced requests from a Redis stream onto RQ, off the request path.

The webhook acknowledges a notification once one Redis script has marked the user dirty and, only when no
sync was pending for that user, appended ``{k: "sync", u: user_id}`` to the stream ``calsync:sync-requests``
(and ``{k: "seen", ...}`` at most once a minute per user, for ``record_notification``). Building an RQ job
(a hash, a queue push, registries: several round trips) happens here instead, in batches.

The stream is read through a consumer group, so several dispatchers (one per scheduler process, one in
``calsync dev``) share it without doubling work, and nothing is lost when one dies: an entry is acknowledged
and deleted only after its job is enqueued, and entries a dead dispatcher had read are claimed by another
after ``CLAIM_IDLE_MS``. At-least-once: a crash between enqueue and acknowledgement can enqueue a sync twice,
which the per-user lock and the pending guard turn into a no-op. Entries in the stream stay until
dispatched, across restarts of every process (as durable as Redis is configured to be).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from redis import Redis
from redis.exceptions import ResponseError

from service import queues
from service.sync import rule
from service.sync.requests import SYNC_RETRY, rescue_stranded
from service.sync.rule import STREAM

log = logging.getLogger(__name__)

GROUP = "dispatchers"
BATCH = 500
BLOCK_MS = 1000
CLAIM_IDLE_MS = 10_000          # entries read by a dispatcher that has not acknowledged them for this long
RESCUE_EVERY = 30.0             # seconds between looks for stranded syncs (sync.requests.rescue_stranded)
RETIRE_IDLE_MS = 3_600_000      # consumers idle this long with nothing pending are forgotten


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def ensure_group(redis: Redis) -> None:
    """Create the consumer group (from the stream's start, so nothing written before it is skipped)."""
    try:
        redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def dispatch_once(redis: Redis, consumer: str, block_ms: int | None = BLOCK_MS, count: int = BATCH) -> int:
    """Enqueue one batch of requests (claimed from dead dispatchers first, else new ones, waiting up to
    ``block_ms``; None: do not wait); returns how many entries were handled."""
    ensure_group(redis)
    claimed = redis.xautoclaim(STREAM, GROUP, consumer, CLAIM_IDLE_MS, "0-0", count=count)[1]
    entries = [e for e in claimed if e[0] and e[1]]
    gone = [e[0] for e in claimed if e[0] and not e[1]]   # deleted meanwhile (Redis 7 drops these itself)
    if gone:
        redis.xack(STREAM, GROUP, *gone)
    if not entries:
        read = redis.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count, block=block_ms)
        entries = read[0][1] if read else []
    if not entries:
        return 0
    _enqueue(redis, entries)
    pipe = redis.pipeline(transaction=False)
    ids = [entry_id for entry_id, _ in entries]
    pipe.xack(STREAM, GROUP, *ids)
    pipe.xdel(STREAM, *ids)
    pipe.execute()
    return len(entries)


def _enqueue(redis: Redis, entries: list) -> None:
    """One RQ pipeline for the batch: a sync per distinct user, a record_notification per 'seen' entry."""
    sync_queue = queues.get_queue(queues.SYNC, redis)
    users, seen, data = {}, set(), []
    for _, fields in entries:
        kind, user_id = fields.get(b"k"), (fields.get(b"u") or b"").decode()
        if not user_id:
            continue
        if kind == b"sync" and user_id not in users:
            users[user_id] = uuid.uuid4().hex
            data.append(sync_queue.prepare_data(queues.SYNC_USER, (user_id,), retry=SYNC_RETRY, timeout=300,
                                                result_ttl=3600, failure_ttl=7 * 86400, job_id=users[user_id]))
        elif kind == b"seen" and user_id not in seen:
            seen.add(user_id)
            args = (user_id, fields.get(b"s", b"").decode(), fields.get(b"at", b"").decode())
            data.append(sync_queue.prepare_data(queues.RECORD_NOTIFICATION, args, retry=queues.DEFAULT_RETRY,
                                                timeout=300, result_ttl=3600, failure_ttl=7 * 86400))
    if data:
        sync_queue.enqueue_many(data)
    if users:
        # The webhook's guard names no job yet; now it names this one, so a stale guard can be told from a
        # live one (the rule takes over a guard whose job is gone). Only a guard still awaiting dispatch: a
        # sync that already started and cleared it keeps it cleared, one claimed since keeps its own job.
        rule.name_jobs(redis, users)


def drain(redis: Redis, consumer: str | None = None) -> int:
    """Dispatch everything in the stream now, without waiting (tests, ``calsync dev``'s job runner)."""
    consumer = consumer or consumer_name()
    total = 0
    while True:
        handled = dispatch_once(redis, consumer, block_ms=None)
        if not handled:
            return total
        total += handled


def backlog(redis: Redis) -> int:
    """Requests waiting to be dispatched (operators: should stay near zero)."""
    return int(redis.xlen(STREAM))


def retire_idle_consumers(redis: Redis) -> int:
    """Forget consumers of dispatchers long gone (nothing pending, idle for an hour)."""
    retired = 0
    for info in redis.xinfo_consumers(STREAM, GROUP):
        if info["pending"] == 0 and info["idle"] > RETIRE_IDLE_MS:
            redis.xgroup_delconsumer(STREAM, GROUP, info["name"])
            retired += 1
    return retired


def run(redis: Redis, stop: threading.Event, consumer: str | None = None) -> None:
    """Dispatch until ``stop`` is set; Redis errors are logged and retried, never fatal."""
    consumer = consumer or consumer_name()
    log.info("sync request dispatcher %s started", consumer)
    loops, rescued_at = 0, time.monotonic()
    while not stop.is_set():
        try:
            dispatch_once(redis, consumer)
            loops += 1
            if time.monotonic() - rescued_at >= RESCUE_EVERY:
                rescued_at = time.monotonic()
                rescued = rescue_stranded(redis)
                if rescued:
                    log.warning("queued syncs for %d user(s) left dirty with no live sync job", len(rescued))
            if loops % 600 == 0:
                retire_idle_consumers(redis)
        except Exception:  # a Redis blip (or anything else) must not end dispatching for this process
            log.exception("dispatching sync requests failed; retrying in 1s")
            stop.wait(1.0)
