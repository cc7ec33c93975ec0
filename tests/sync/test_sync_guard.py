"""The pending guard names its job: a guard left behind by a crash between setting it and enqueueing the
job (Redis died in between, as in the chaos suite) is taken over, a live one still coalesces."""

from __future__ import annotations

from rq import Queue
from rq.job import Job

from service import queues
from service.sync import requests

USER = "user-guarded"


def queued(conn) -> list[str]:
    return [job.id for job in Queue(queues.SYNC, connection=conn).jobs]


def test_a_guard_whose_job_was_never_enqueued_is_taken_over(redis_conn):
    redis_conn.set(requests.PENDING_KEY.format(user_id=USER), "0123456789abcdef", ex=3600)   # the crash's leftover

    assert requests.request_sync(redis_conn, USER, "notification") is True

    (job_id,) = queued(redis_conn)
    assert redis_conn.get(requests.PENDING_KEY.format(user_id=USER)).decode() == job_id
    assert redis_conn.exists(requests.DIRTY_KEY.format(user_id=USER))


def test_a_guard_from_before_guards_named_jobs_is_taken_over(redis_conn):
    redis_conn.set(requests.PENDING_KEY.format(user_id=USER), "notification", ex=3600)

    assert requests.request_sync(redis_conn, USER, "notification") is True
    assert len(queued(redis_conn)) == 1


def test_a_live_guard_coalesces_and_a_failed_job_does_not_hold_it(redis_conn):
    assert requests.request_syncs(redis_conn, [USER, USER, "other"], "notification") == [USER, "other"]
    assert requests.request_sync(redis_conn, USER, "notification") is False   # its job is queued
    job_id = redis_conn.get(requests.PENDING_KEY.format(user_id=USER)).decode()
    Job.fetch(job_id, connection=redis_conn).set_status("failed")

    assert requests.request_sync(redis_conn, USER, "notification") is True
    assert len(queued(redis_conn)) == 3
