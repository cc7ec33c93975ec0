"""RQ entry points. Thin: primitive arguments in, one domain call out, exceptions go to RQ.

Sync requests are coalesced in Redis: ``request_sync`` marks the user dirty and enqueues a sync only if
none is pending. The sync job clears ``pending`` as it starts, takes the per-user lock, and loops while
``dirty`` was set again during its round, so a notification that arrives mid-sync is never lost.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import timedelta

from redis import Redis
from rq import Retry, get_current_job

from service import runtime
from service.auth.tokens import ReconnectRequired, require_reconnect
from service.graph import GraphError, Throttled, Unauthorized
from service.runtime import Runtime
from service.store import sync_state, users, utcnow
from service.workers import queues, sync
from service.workers.lease import Lease

log = logging.getLogger(__name__)

DIRTY_KEY = "calsync:dirty:{user_id}"
PENDING_KEY = "calsync:sync-pending:{user_id}"
LOCK_KEY = "calsync:lock:sync:{user_id}"
RECHECK_KEY = "calsync:sync-recheck:{user_id}"
DIRTY_TTL = 86_400
PENDING_TTL = 3_600          # a lost job frees the guard after this; the reconcile sweep covers the rest
LOCK_TTL_MS = 120_000        # renewed before every page; a SIGKILLed holder frees it after this
LOCKED_RETRY_SECONDS = 5.0   # another worker holds the user's lock: look again then, in case it died
DEFAULT_THROTTLE_SECONDS = 30.0
MAX_ROUNDS = 5               # then requeue behind other users instead of monopolising a worker
MAX_USER_ID = 200
SYNC_RETRY = Retry(max=5, interval=[5, 30, 120, 600, 1800])

def ping(value: str) -> str:
    """A no-op job used by health checks and the Procfile worker test."""
    rt = runtime.current()
    rt.redis.set(f"calsync:ping:{value}", "pong", ex=300)
    return value


# ------------------------------------------------------------------ asking for a sync (hot path)

def request_sync(rt: Runtime, user_id: str, reason: str) -> bool:
    """Mark the user dirty and enqueue one sync unless one is pending; True if a job was enqueued.

    Two Redis commands in one round trip, plus the enqueue when needed; no MongoDB.
    """
    return bool(request_syncs(rt, [user_id], reason))


def request_syncs(rt: Runtime, user_ids: list[str], reason: str) -> list[str]:
    """``request_sync`` for several users in one Redis round trip (a webhook batch); returns those enqueued."""
    for user_id in user_ids:
        if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID:
            raise ValueError("user_id must be a short non-empty string")
    pipe = rt.redis.pipeline(transaction=False)
    for user_id in user_ids:
        pipe.set(DIRTY_KEY.format(user_id=user_id), reason[:40], ex=DIRTY_TTL)
        pipe.set(PENDING_KEY.format(user_id=user_id), reason[:40], nx=True, ex=PENDING_TTL)
    replies = pipe.execute()
    fresh = [user_id for user_id, pending_set in zip(user_ids, replies[1::2], strict=True) if pending_set]
    for n, user_id in enumerate(fresh):
        try:
            queues.enqueue(rt.redis, queues.SYNC, "service.workers.jobs.sync_user", user_id, retry=SYNC_RETRY)
        except BaseException:
            # Let the next notification try again for every user not queued yet.
            rt.redis.delete(*(PENDING_KEY.format(user_id=u) for u in fresh[n:]))
            raise
    return fresh


def _defer(rt: Runtime, user_id: str, delay: float, reason: str) -> None:
    """Run this user's sync again in ``delay`` seconds, and hold off new ones until then (throttling)."""
    rt.redis.set(PENDING_KEY.format(user_id=user_id), reason, ex=PENDING_TTL + int(delay))
    _schedule(rt, user_id, delay)


def _schedule(rt: Runtime, user_id: str, delay: float) -> None:
    queues.get_queue(queues.SYNC, rt.redis).enqueue_in(
        timedelta(seconds=delay), "service.workers.jobs.sync_user", user_id,
        retry=SYNC_RETRY, job_timeout=300, result_ttl=3600, failure_ttl=7 * 86400,
    )


# ------------------------------------------------------------------ the per-user lock

class SyncLock(Lease):
    """``calsync:lock:sync:{user}`` held by one job id; the same job re-run after a crash may take it back."""

    def __init__(self, connection: Redis, user_id: str, owner: str):
        super().__init__(connection, LOCK_KEY.format(user_id=user_id), owner, LOCK_TTL_MS)


# ------------------------------------------------------------------ the jobs

def sync_user(user_id: str) -> str:
    """Bring one user's stored events in line with Graph; returns what happened (for RQ's result)."""
    rt = runtime.current()
    job = get_current_job()
    rt.redis.delete(PENDING_KEY.format(user_id=user_id))
    lock = SyncLock(rt.redis, user_id, job.id if job else uuid.uuid4().hex)
    if not lock.acquire():
        # The holder runs rounds while the user is dirty and looks again after releasing, so this request
        # is covered without waiting. One delayed re-check per user covers a holder that died.
        if rt.redis.set(RECHECK_KEY.format(user_id=user_id), 1, nx=True, ex=int(LOCKED_RETRY_SECONDS) + 5):
            _schedule(rt, user_id, LOCKED_RETRY_SECONDS + random.uniform(0, 2))  # noqa: S311 - jitter
        return "coalesced"
    try:
        return _sync_rounds(rt, user_id, lock)
    finally:
        lock.release()
        if rt.redis.exists(DIRTY_KEY.format(user_id=user_id)):
            request_sync(rt, user_id, "dirty-after-release")  # a notification landed after our last look


def _sync_rounds(rt: Runtime, user_id: str, lock: SyncLock) -> str:
    dirty = DIRTY_KEY.format(user_id=user_id)
    for _ in range(MAX_ROUNDS):
        user = users.get(rt.db, user_id)
        if user is None or (user.get("connection") or {}).get("status") != users.CONNECTED:
            rt.redis.delete(dirty)
            return "skipped"
        rt.redis.delete(dirty)
        outcome = _one_round(rt, user_id, lock)
        if outcome != "ok" or not rt.redis.exists(dirty):
            return outcome
    request_sync(rt, user_id, "still-dirty")
    return "ok"


def _one_round(rt: Runtime, user_id: str, lock: SyncLock) -> str:
    """One delta round with Graph's failure modes mapped to what the user and the queue need."""
    try:
        graph = sync.graph_client(rt, user_id)
        result = sync.run_round(rt, user_id, graph, renew=lock.renew)
    except Throttled as exc:
        delay = (exc.retry_after if exc.retry_after is not None else DEFAULT_THROTTLE_SECONDS)
        delay += random.uniform(0.1, 1.0 + delay / 10)  # noqa: S311 - jitter spreads the herd
        sync_state.record_failure(rt.db, user_id, utcnow(), "throttled", f"{exc.status} {exc.code}".strip())
        _defer(rt, user_id, delay, "throttled")
        log.info("sync of user %s throttled; again in %.1fs", user_id, delay)
        return "throttled"
    except ReconnectRequired:
        sync_state.record_failure(rt.db, user_id, utcnow(), "needs_reconnect", "reconnect required")
        return "needs_reconnect"
    except Unauthorized:
        require_reconnect(rt, user_id, "Graph refused a freshly refreshed token")  # also mails the user once
        sync_state.record_failure(rt.db, user_id, utcnow(), "needs_reconnect", "401 after token refresh")
        return "needs_reconnect"
    except sync.LockLost:
        log.warning("sync of user %s lost its lock mid-round; the new holder continues", user_id)
        return "lock-lost"
    except GraphError as exc:
        if exc.status == 404 and _user_gone(rt, user_id):
            return "disconnected"
        sync_state.record_failure(rt.db, user_id, utcnow(), "error", f"{exc.status} {exc.code}".strip())
        raise   # RQ retries with back-off (SYNC_RETRY)
    now = utcnow()
    sync_state.record_success(rt.db, user_id, now, result.label, result.applied.lag_seconds)
    if result.full:   # daily at least (window roll); cheap enough there, not on every notification
        sync.infer_time_zone(rt, user_id)
    log.info("synced user %s: %s, %d pages, %d upserted, %d deleted, %d stale", user_id, result.label,
             result.pages, result.applied.upserted, result.applied.deleted + result.removed_missing,
             result.applied.stale)
    return "ok"


def _user_gone(rt: Runtime, user_id: str) -> bool:
    """Graph said 404: if /me is gone too, the account no longer exists → the disconnect flow."""
    try:
        sync.graph_client(rt, user_id).get_json("me")
    except GraphError as exc:
        if exc.status != 404:
            return False
    else:
        return False
    log.warning("Graph no longer knows user %s; disconnecting", user_id)
    from service.auth.lifecycle import disconnect  # here: the connect part imports this module's request_sync

    disconnect(rt, user_id, purge=False)
    users.set_connection_status(rt.db, user_id, users.DISCONNECTED, reason="user not found in Microsoft Graph")
    sync_state.clear(rt.db, user_id)
    sync_state.record_failure(rt.db, user_id, utcnow(), "disconnected", "404 user not found")
    return True


# ------------------------------------------------------------------ sweeps (the scheduler enqueues these)

SWEEP_BATCH = 500


def reconcile_sweep() -> int:
    """Delta-sync users with no sync for ``reconcile_hours`` (Graph can drop notifications silently)."""
    rt = runtime.current()
    cutoff = utcnow() - timedelta(hours=rt.settings.reconcile_hours)
    requested = _request_in_batches(rt, sync_state.stale_users(rt.db, cutoff), "reconcile")
    log.info("reconcile sweep requested %d syncs", requested)
    return requested


def window_roll_sweep() -> int:
    """Re-baseline users whose synced window starts before today's (the daily roll)."""
    rt = runtime.current()
    today_start, _ = sync.window_for(rt.settings, utcnow())
    rolled = sync_state.windows_starting_before(rt.db, today_start)
    connected = [user_id for batch in _batches(rolled)
                 for user_id, status in users.connection_statuses(rt.db, batch).items() if status == users.CONNECTED]
    requested = _request_in_batches(rt, connected, "window-roll")
    log.info("window roll requested %d syncs", requested)
    return requested


def _batches(ids: list[str], size: int = SWEEP_BATCH):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _request_in_batches(rt: Runtime, user_ids: list[str], reason: str) -> int:
    """Ask for syncs a batch per Redis round trip (ids were read first: no cursor stays open meanwhile)."""
    return sum(len(request_syncs(rt, batch, reason)) for batch in _batches(user_ids))
