"""The Procfile's worker runs each job in its own process (RQ's SimpleWorker) and keeps the job's heartbeat
short and renewed, as a forking worker's main loop does: a worker SIGKILLed mid-job leaves a job that RQ's
registry cleanup finds abandoned, and retries under its id, within about 10 s, not after the job's whole
timeout (SimpleWorker's own heartbeat is the timeout plus 60 s: six minutes for a sync)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq import Retry, Worker
from rq.job import JobStatus
from rq.registry import StartedJobRegistry

from harness.waiting import wait_until
from service import queues
from service.workers.worker import HEARTBEAT_SECONDS, HEARTBEAT_TTL, RECOVERY_SECONDS

ROOT = Path(__file__).resolve().parents[2]
RQ = str(Path(sys.executable).with_name("rq"))
INTERVAL = 1          # --job-monitoring-interval: seconds between heartbeats
TTL = INTERVAL + HEARTBEAT_TTL - HEARTBEAT_SECONDS   # the heartbeat's TTL for a job with a longer timeout


def started_scores(redis_conn, registry: StartedJobRegistry) -> list[float]:
    return [score for _, score in redis_conn.zrange(registry.key, 0, -1, withscores=True)]


@pytest.mark.slow
def test_a_worker_killed_mid_job_leaves_a_job_that_rq_retries_after_the_heartbeat_not_the_timeout(
        tmp_path, redis_url, redis_conn):
    queue = queues.get_queue(queues.MAINTENANCE, redis_conn)
    job = queue.enqueue("tests.support.slow_jobs.sleep", 60, job_timeout=300, retry=Retry(max=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_") and k != "MONGODB_URI"}
    env.update({"PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "CALSYNC_DATA_DIR": str(tmp_path / "var")})
    worker = subprocess.Popen([RQ, "worker", "-w", "service.workers.worker.Worker", "--url", redis_url,
                               "--job-monitoring-interval", str(INTERVAL), queues.MAINTENANCE],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    registry = StartedJobRegistry(queue=queue)
    try:
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED and started_scores(redis_conn, registry),
                   timeout=30, message="the job to start")
        first = max(started_scores(redis_conn, registry))
        assert first - time.time() <= TTL + 1                   # not the job's 300 s timeout + 60
        wait_until(lambda: max(started_scores(redis_conn, registry)) >= first + 2 * INTERVAL, timeout=10,
                   message="the worker to renew the job's heartbeat twice")
    finally:
        os.kill(worker.pid, signal.SIGKILL)                     # mid-job, as a lost machine
        worker.wait(timeout=10)
        worker.stderr.close()

    assert job.get_status(refresh=True) == JobStatus.STARTED    # nobody told RQ
    registry.cleanup(timestamp=time.time() + TTL + 2 * INTERVAL)   # RQ's own cleanup, a heartbeat TTL from now
    assert job.get_status(refresh=True) in (JobStatus.QUEUED, JobStatus.SCHEDULED)   # retried, same id
    job.refresh()
    assert job.retries_left == 0


def _worker(tmp_path: Path, redis_url: str, queue: str) -> subprocess.Popen:
    """A worker as the Procfile starts it (no heartbeat option: the class's own interval and TTL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_") and k != "MONGODB_URI"}
    env.update({"PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "CALSYNC_DATA_DIR": str(tmp_path / "var")})
    return subprocess.Popen([RQ, "worker", "-w", "service.workers.worker.Worker", "--url", redis_url, queue],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=10)


@pytest.mark.slow
def test_a_job_longer_than_many_heartbeat_ttls_stays_with_its_live_worker(tmp_path, redis_url, redis_conn):
    """Another worker, idle and looking for dead workers' jobs every second, never takes over a long job whose
    worker is alive: it runs once, and no retry is spent."""
    queue = queues.get_queue(queues.MAINTENANCE, redis_conn)
    started, release = "test:long:started", "test:long:release"
    held = 3 * HEARTBEAT_TTL
    job = queue.enqueue("tests.support.slow_jobs.hold", started, release, held, job_timeout=300,
                        retry=Retry(max=2))
    workers = [_worker(tmp_path, redis_url, queues.MAINTENANCE)]
    try:
        wait_until(lambda: redis_conn.llen(started) == 1, timeout=30, message="the long job to start")
        workers.append(_worker(tmp_path, redis_url, queues.MAINTENANCE))     # idle: it runs the recovery
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=held + 30,
                   message="the long job to finish")
    finally:
        _stop(workers)
    job.refresh()
    assert job.return_value() == "timed out"            # it held for its whole time, in one run
    assert redis_conn.llen(started) == 1 and job.retries_left == 2


@pytest.mark.slow
def test_a_killed_workers_job_is_run_again_by_another_within_the_heartbeat_bound(tmp_path, redis_url, redis_conn):
    queue = queues.get_queue(queues.MAINTENANCE, redis_conn)
    started, release = "test:killed:started", "test:killed:release"
    job = queue.enqueue("tests.support.slow_jobs.hold", started, release, 120, job_timeout=300, retry=Retry(max=1))
    workers = [_worker(tmp_path, redis_url, queues.MAINTENANCE)]
    try:
        wait_until(lambda: redis_conn.llen(started) == 1, timeout=30, message="the job to start")
        workers.append(_worker(tmp_path, redis_url, queues.MAINTENANCE))
        wait_until(lambda: len(Worker.all(queue=queue)) == 2, timeout=30, message="the second worker to start")
        workers[0].kill()                                # SIGKILL mid-job
        killed = time.monotonic()
        workers[0].wait(timeout=10)
        wait_until(lambda: redis_conn.llen(started) == 2, timeout=60, interval=0.05,
                   message="the second worker to run the job again")
        taken_over = time.monotonic() - killed
        redis_conn.rpush(release, 1)
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=30,
                   message="the retried job to finish")
    finally:
        _stop(workers)
    # the TTL after the last beat (at most a beat before the kill), RQ's whole-second scores, and a recovery pass
    assert taken_over <= HEARTBEAT_TTL + RECOVERY_SECONDS + 2, taken_over
    job.refresh()
    assert job.retries_left == 0 and job.return_value() == "released"
