"""Asking for a sync: the one way anything (webhook, lifecycle, connect, sweeps) gets a user synced.

Requests are coalesced in Redis: ``request_syncs`` marks each user dirty and enqueues a sync only for
users with none pending. The sync job clears ``pending`` as it starts and loops while ``dirty`` was set
again during its round, so a notification that arrives mid-sync is never lost.

``pending`` holds the id of the job it stands for, chosen before the job is enqueued. A guard whose job
does not exist, or has already failed or finished, is stale and taken over: Redis dying between setting the
guard and enqueueing the job (found by the chaos suite) must not keep the user from syncing for an hour.
That rule (dirty flag, guard, take-over) is written once, in ``rule.lua``, which the webhook and the
dispatcher call too (``service.sync.rule``).
"""

from __future__ import annotations

import uuid

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from service import queues
from service.sync import rule
from service.sync.rule import AWAITING_DISPATCH, DIRTY_KEY, DIRTY_TTL, PENDING_KEY, PENDING_TTL

DELETING_KEY = "calsync:deleting:{user_id}"     # set while a user's data is being deleted: no sync writes
DELETING_TTL = 3_600
MAX_USER_ID = 200
SYNC_RETRY = Retry(max=5, interval=[5, 30, 120, 600, 1800])


def request_sync(redis: Redis, user_id: str, reason: str) -> bool:
    """Mark the user dirty and enqueue one sync unless one is pending; True if a job was enqueued."""
    return bool(request_syncs(redis, [user_id], reason))


def request_syncs(redis: Redis, user_ids: list[str], reason: str) -> list[str]:
    """``request_sync`` for several users in one Redis round trip (a webhook batch); returns those enqueued."""
    for user_id in user_ids:
        if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID:
            raise ValueError("user_id must be a short non-empty string")
    user_ids = list(dict.fromkeys(user_ids))
    if not user_ids:
        return []
    job_ids = {user_id: uuid.uuid4().hex for user_id in user_ids}
    claimed = rule.claim(redis, reason[:40], job_ids)   # the rule (service/sync/rule.lua), one round trip
    fresh = [user_id for user_id, won in zip(user_ids, claimed, strict=True) if won]
    for n, user_id in enumerate(fresh):
        try:
            queues.enqueue(redis, queues.SYNC, queues.SYNC_USER, user_id, retry=SYNC_RETRY, job_id=job_ids[user_id])
        except BaseException:
            # Let the next notification try again for every user not queued yet.
            redis.delete(*(PENDING_KEY.format(user_id=u) for u in fresh[n:]))
            raise
    return fresh


def mark_deleting(redis: Redis, user_id: str) -> None:
    """A deletion of everything we hold about the user has begun: syncs stop before their next write."""
    redis.set(DELETING_KEY.format(user_id=user_id), 1, ex=DELETING_TTL)


def is_deleting(redis: Redis, user_id: str) -> bool:
    return bool(redis.exists(DELETING_KEY.format(user_id=user_id)))


def deletion_done(redis: Redis, user_id: str) -> None:
    redis.delete(DELETING_KEY.format(user_id=user_id), DIRTY_KEY.format(user_id=user_id),
                 PENDING_KEY.format(user_id=user_id))


def schedule_sync(redis: Redis, user_id: str, delay: float) -> Job:
    """Run this user's sync in ``delay`` seconds (RQ's scheduler moves it onto the queue)."""
    return queues.get_queue(queues.SYNC, redis).enqueue_at(
        queues.in_seconds(delay), queues.SYNC_USER, user_id,
        retry=SYNC_RETRY, job_timeout=300, result_ttl=3600, failure_ttl=7 * 86400,
    )


def defer_sync(redis: Redis, user_id: str, delay: float, reason: str) -> None:
    """Run the sync again in ``delay`` seconds and hold off new ones until then (throttling)."""
    job = schedule_sync(redis, user_id, delay)
    redis.set(PENDING_KEY.format(user_id=user_id), job.id, ex=PENDING_TTL + int(delay))   # new requests wait for it


def take_dirty(redis: Redis, user_id: str) -> None:
    """A round is starting: what was asked for so far is covered by it."""
    redis.delete(DIRTY_KEY.format(user_id=user_id))


def is_dirty(redis: Redis, user_id: str) -> bool:
    return bool(redis.exists(DIRTY_KEY.format(user_id=user_id)))


def clear_pending(redis: Redis, user_id: str) -> None:
    """The queued sync is running: the next request may queue another."""
    redis.delete(PENDING_KEY.format(user_id=user_id))


STRANDED_AGE = 60   # seconds a user has been dirty with no live sync before the rescue queues one


def rescue_stranded(redis: Redis, min_age: int = STRANDED_AGE, limit: int = 1_000) -> list[str]:
    """Queue a sync for each user dirty for ``min_age`` seconds whose pending guard names no job that can
    still run: no guard, or a job that is gone, done, or recorded as queued/started/scheduled while in no
    queue or registry (a worker SIGKILLed as it took the job, a Redis that lost the tail of its log). The
    chaos suite found such a user, dirty and guarded by a "queued" job in no queue, never synced again
    once notifications stopped. Cost: one SCAN over the dirty keys (only users not synced yet) per call.
    Returns the users queued."""
    stranded = []
    for key in redis.scan_iter(match=DIRTY_KEY.format(user_id="*"), count=500):
        user_id = key.decode().removeprefix(DIRTY_KEY.format(user_id=""))
        if DIRTY_TTL - redis.ttl(key) < min_age or is_deleting(redis, user_id):
            continue
        guard = redis.get(PENDING_KEY.format(user_id=user_id))
        if guard is not None and (guard.decode() == AWAITING_DISPATCH or _job_can_run(redis, guard.decode())):
            continue
        redis.delete(PENDING_KEY.format(user_id=user_id))
        stranded.append(user_id)
        if len(stranded) >= limit:
            break
    return request_syncs(redis, stranded, "stranded") if stranded else []


def _job_can_run(redis: Redis, job_id: str) -> bool:
    """The job exists and sits where a worker or RQ's scheduler will still find it (RQ's public API: the job,
    its queue, the registries; no RQ key named here)."""
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    queue = Queue(job.origin, connection=redis)
    if status == JobStatus.QUEUED:
        return queue.get_job_position(job_id) is not None or job_id in queue.intermediate_queue.get_job_ids()
    if status == JobStatus.STARTED:
        return job_id in StartedJobRegistry(queue=queue)
    if status in (JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return job_id in ScheduledJobRegistry(queue=queue) or job_id in DeferredJobRegistry(queue=queue)
    return False
