"""What the Procfile's worker does with the work a SIGKILLed worker held, on its next maintenance pass: a job
it took off a queue but never recorded goes back at the head of the queue; a job it was running (heartbeat
lapsed) is retried at once; and a message claim its dead execution held is taken over by the next run.
The same for a digest's and a prep's own claim. (A real worker killed mid-send:
tests/workers/test_killed_worker_delivery.py.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from rq import Queue, Retry
from rq.executions import Execution
from rq.job import JobStatus

from service.channels.claims import alive_in, holder_alive
from service.store import channels as channels_store
from service.store import digests as digests_store
from service.store import preps as preps_store
from service.workers.worker import STUCK_SECONDS, requeue_stuck, retry_abandoned

JOB = "tests.support.slow_jobs.sleep"


def test_a_job_taken_off_its_queue_by_a_worker_that_died_goes_back_at_the_head(redis_conn):
    queue = Queue("dead-worker", connection=redis_conn)
    lost, waiting = queue.enqueue(JOB, 0), queue.enqueue(JOB, 0)
    redis_conn.lmove(queue.key, queue.intermediate_queue_key)     # the dying worker's BLMOVE; nothing after it
    assert queue.job_ids == [waiting.id]

    assert requeue_stuck(queue) == []                              # first seen now: a live worker may hold it
    first_seen = queue.intermediate_queue.get_first_seen_key(lost.id)
    redis_conn.set(first_seen, time.time() - STUCK_SECONDS - 1)   # that pass was STUCK_SECONDS ago
    assert requeue_stuck(queue) == [lost.id]

    assert queue.job_ids == [lost.id, waiting.id]
    assert queue.intermediate_queue.get_job_ids() == [] and not redis_conn.exists(first_seen)
    assert lost.get_status(refresh=True) == JobStatus.QUEUED
    assert requeue_stuck(queue) == []


def test_a_job_a_live_worker_has_started_stays_in_its_hands(redis_conn):
    queue = Queue("dead-worker", connection=redis_conn)
    job = queue.enqueue(JOB, 0)
    redis_conn.lmove(queue.key, queue.intermediate_queue_key)
    with redis_conn.pipeline() as pipe:                            # the live worker recorded its execution
        Execution.create(job, ttl=60, pipeline=pipe)
        pipe.execute()
    redis_conn.set(queue.intermediate_queue.get_first_seen_key(job.id), time.time() - STUCK_SECONDS - 1)

    assert requeue_stuck(queue) == [] and queue.job_ids == []


def _abandoned(queue: Queue, retries: int):
    job = queue.enqueue(JOB, 0, retry=Retry(max=retries, interval=[60]) if retries else None)
    redis_conn = queue.connection
    redis_conn.lmove(queue.key, queue.intermediate_queue_key)
    with redis_conn.pipeline() as pipe:
        execution = Execution.create(job, ttl=1, pipeline=pipe)
        job.set_status(JobStatus.STARTED, pipeline=pipe)
        pipe.execute()
    # its worker died: no heartbeat since; the registry entry's time has passed
    redis_conn.zadd(queue.started_job_registry.key, {execution.composite_key: time.time() - 1})
    return job


def test_a_job_whose_worker_died_mid_run_is_retried_at_once_not_after_its_interval(redis_conn):
    queue = Queue("dead-worker", connection=redis_conn)
    job = _abandoned(queue, retries=2)
    waiting = queue.enqueue(JOB, 0)

    assert retry_abandoned(queue) == [job.id]

    assert queue.job_ids == [job.id, waiting.id]                  # at the head, not scheduled 60 s on
    job.refresh()
    assert job.get_status() == JobStatus.QUEUED and job.retries_left == 1
    assert queue.started_job_registry.get_job_ids(cleanup=False) == []
    assert retry_abandoned(queue) == []


def test_an_abandoned_job_without_a_retry_is_left_to_rq_which_fails_it(redis_conn):
    queue = Queue("dead-worker", connection=redis_conn)
    job = _abandoned(queue, retries=0)

    assert retry_abandoned(queue) == []
    queue.started_job_registry.cleanup()
    assert job.get_status(refresh=True) == JobStatus.FAILED and queue.job_ids == []


def test_a_message_claim_is_taken_over_once_the_execution_holding_it_is_gone(db, redis_conn):
    queue = Queue("dead-worker", connection=redis_conn)
    job = queue.enqueue(JOB, 0)
    with redis_conn.pipeline() as pipe:
        held, retry = Execution.create(job, ttl=60, pipeline=pipe), Execution.create(job, ttl=60, pipeline=pipe)
        pipe.execute()

    def alive(name: str) -> bool:
        return holder_alive(redis_conn, name)

    assert channels_store.claim_send(db, "digest:1", "teams", "u1", holder=held.composite_key, holder_alive=alive)
    assert not channels_store.claim_send(db, "digest:1", "teams", "u1", holder="other:1", holder_alive=alive)
    assert not channels_store.claim_send(db, "digest:1", "teams", "u1")      # no way to tell: 15 minutes

    redis_conn.delete(held.key)                                   # its heartbeat lapsed: the worker died
    assert channels_store.claim_send(db, "digest:1", "teams", "u1", holder=retry.composite_key, holder_alive=alive)
    claim = db.channel_sends.find_one({"_id": "digest:1:teams"})
    assert claim["holder"] == retry.composite_key and claim["attempts"] == 2 and claim["status"] == "sending"
    assert not channels_store.claim_send(db, "digest:1", "teams", "u1", holder="third:3", holder_alive=alive)

    channels_store.finish_send(db, "digest:1", "teams", channels_store.SENT)
    redis_conn.delete(retry.key)
    assert not channels_store.claim_send(db, "digest:1", "teams", "u1", holder="fourth:4", holder_alive=alive)


@pytest.mark.parametrize("kind", ["digest", "prep"])
def test_a_digest_or_prep_claim_is_taken_over_once_the_execution_holding_it_is_gone(db, redis_conn, kind):
    """RQ retries a killed job at once; a claim that waited out its age instead would answer that retry
    "already handled", and the digest or prep would never go out."""
    queue = Queue("dead-worker", connection=redis_conn)
    job = queue.enqueue(JOB, 0)
    with redis_conn.pipeline() as pipe:
        held, retry = Execution.create(job, ttl=60, pipeline=pipe), Execution.create(job, ttl=60, pipeline=pipe)
        pipe.execute()
    alive = alive_in(redis_conn)
    start = datetime(2026, 7, 1, 9, tzinfo=UTC)

    def claim(holder=None, holder_alive=None):
        if kind == "digest":
            return digests_store.claim(db, "u1", "2026-07-01", holder=holder, holder_alive=holder_alive)
        return preps_store.claim(db, "u1", "m1", start, holder=holder, holder_alive=holder_alive)

    assert claim(held.composite_key, alive)["holder"] == held.composite_key
    assert claim("other:1", alive) is None               # its holder still beats
    assert claim() is None                               # no way to tell: only its age

    redis_conn.delete(held.key)                          # its heartbeat lapsed: the worker died
    taken = claim(retry.composite_key, alive)
    assert taken["holder"] == retry.composite_key and taken["attempts"] == 2 and taken["status"] == "sending"
    assert claim("third:3", alive) is None
