"""A worker on several queues (the Procfile's six) takes a job as a worker on one does: moved into its queue's
intermediate list, in priority order, so that a worker killed between the dequeue and recording the execution
leaves the job where maintenance finds it and puts it back, instead of RQ's BLPOP losing it without a trace."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.job import JobStatus

from bench import p12_channels as p12
from bench.common import python_env
from service.config import Settings
from service.workers.worker import STUCK_SECONDS, dequeue_moving, moving_queue_class, requeue_stuck

ROOT = Path(__file__).resolve().parents[2]
JOB = "tests.support.slow_jobs.sleep"


def test_a_job_dequeued_from_several_queues_waits_in_its_queues_intermediate_list(redis_conn):
    high, low = Queue("mq-high", connection=redis_conn), Queue("mq-low", connection=redis_conn)
    later = low.enqueue(JOB, 0)
    first = high.enqueue(JOB, 0)

    job, queue = moving_queue_class(Queue).dequeue_any([high, low], None, connection=redis_conn)

    assert (job.id, queue.name) == (first.id, "mq-high")                # priority order: the first queue first
    assert high.job_ids == [] and high.intermediate_queue.get_job_ids() == [first.id]
    assert low.job_ids == [later.id] and low.intermediate_queue.get_job_ids() == []
    job, queue = moving_queue_class(Queue).dequeue_any([high, low], None, connection=redis_conn)
    assert (job.id, queue.name) == (later.id, "mq-low")
    assert low.intermediate_queue.get_job_ids() == [later.id]
    assert moving_queue_class(Queue).dequeue_any([high, low], None, connection=redis_conn) is None


def test_a_worker_killed_right_after_a_multi_queue_dequeue_loses_nothing(redis_conn):
    high, low = Queue("mq-high", connection=redis_conn), Queue("mq-low", connection=redis_conn)
    taken = low.enqueue(JOB, 0)
    waiting = low.enqueue(JOB, 0)

    job, _ = moving_queue_class(Queue).dequeue_any([high, low], 1, connection=redis_conn)
    assert job.id == taken.id                         # ... and the worker dies here, before recording anything

    assert requeue_stuck(low) == []                   # first seen: a live worker records it within milliseconds
    redis_conn.set(low.intermediate_queue.get_first_seen_key(taken.id), time.time() - STUCK_SECONDS - 1)
    assert requeue_stuck(low) == [taken.id]
    assert low.job_ids == [taken.id, waiting.id]      # back at the head of its queue, not spent
    assert taken.get_status(refresh=True) == JobStatus.QUEUED


def test_a_blocked_dequeue_sees_a_job_arriving_on_a_later_queue(redis_conn):
    high, low = Queue("mq-high", connection=redis_conn), Queue("mq-low", connection=redis_conn)
    found: list = []
    waiter = threading.Thread(target=lambda: found.append(dequeue_moving(redis_conn, [high, low], 10)))
    waiter.start()
    job = low.enqueue(JOB, 0)
    waiter.join(timeout=15)

    assert found == [(low.key, job.id)]
    assert low.intermediate_queue.get_job_ids() == [job.id]


def test_all_queues_empty_is_rqs_dequeue_timeout(redis_conn):
    high, low = Queue("mq-high", connection=redis_conn), Queue("mq-low", connection=redis_conn)
    with pytest.raises(DequeueTimeout):
        dequeue_moving(redis_conn, [high, low], 0.5)


@pytest.mark.wire
def test_a_real_worker_on_two_queues_runs_both_in_order_and_leaves_no_intermediate_entry(tmp_path, mongodb_uri,
                                                                                        redis_url, redis_conn):
    high, low = Queue("mq-high", connection=redis_conn), Queue("mq-low", connection=redis_conn)
    later = low.enqueue(JOB, 0)
    first = high.enqueue(JOB, 0)
    settings = Settings(public_url="http://127.0.0.1:9", mongodb_uri=mongodb_uri, redis_url=redis_url,
                        data_dir=str(tmp_path / "var"))
    command = [sys.executable, "-m", "rq.cli", "worker", "-w", "service.workers.worker.Worker", "--url", redis_url,
               "--burst", "mq-high", "mq-low"]
    env = python_env({k: v for k, v in p12.worker_env(settings).items() if v is not None})   # no emulator
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr.decode()[-2000:]
    for job in (first, later):
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED and job.return_value() == "slept"
    assert first.started_at <= later.started_at
    assert high.intermediate_queue.get_job_ids() == [] and low.intermediate_queue.get_job_ids() == []
