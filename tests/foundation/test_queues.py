import inspect
import os
import shlex
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

from rq import Worker

from harness.waiting import wait_until
from service import queues
from service.workers import jobs
from service.workers.inprocess import InProcessWorker, scheduled_forever
from tests.support.processes import ROOT, procfile_command


def test_a_worker_drains_the_queues_in_priority_order(redis_conn, rt, run_jobs):
    enqueued = [queues.enqueue(redis_conn, name, queues.PING, name) for name in reversed(queues.ALL)]

    run_jobs()

    for job in enqueued:
        job.refresh()
    finished = [job.args[0] for job in sorted(enqueued, key=lambda j: j.ended_at)]
    assert finished == ["sync", "subscriptions", "prep", "digest", "maintenance", "outbound"]


def test_every_job_name_domain_code_enqueues_is_a_real_entry_point():
    named = {value for key, value in vars(queues).items()
             if key.isupper() and not key.startswith("_") and isinstance(value, str) and value.startswith("service.")}
    entry_points = {f"{jobs.__name__}.{name}" for name, value in vars(jobs).items()
                    if inspect.isfunction(value) and value.__module__ == jobs.__name__ and not name.startswith("_")}

    assert named == set(queues.JOB_NAMES)  # every constant is listed, so none escapes this check
    assert named == entry_points           # and each names a function of the entry-point module, and back


def test_procfile_worker_line_runs_a_queued_job_in_a_real_rq_worker(redis_conn, redis_url):
    job = queues.enqueue(redis_conn, queues.MAINTENANCE, queues.PING, "procfile")
    argv = shlex.split(procfile_command("worker").replace('"$REDIS_URL"', redis_url)) + ["--burst"]
    argv[0] = str(Path(sys.executable).with_name("rq"))

    result = subprocess.run(
        argv, cwd=ROOT, env={**os.environ, "REDIS_URL": redis_url}, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr[-2000:]
    job.refresh()
    assert job.get_status() == "finished"
    assert redis_conn.get("calsync:ping:procfile") == b"pong"


def test_run_jobs_fixture_drains_every_queue(redis_conn, rt, run_jobs):
    for name in queues.ALL:
        queues.enqueue(redis_conn, name, "service.workers.jobs.ping", name)

    run_jobs()

    assert all(redis_conn.get(f"calsync:ping:{name}") == b"pong" for name in queues.ALL)


def test_the_embedded_worker_is_a_registered_worker_runs_scheduled_jobs_and_stops(redis_conn, rt):
    stop = threading.Event()
    worker = InProcessWorker(redis_conn, stop)
    threads = [threading.Thread(target=worker.run), threading.Thread(target=scheduled_forever, args=(redis_conn, stop))]
    for thread in threads:
        thread.start()
    maintenance = queues.get_queue(queues.MAINTENANCE, redis_conn)
    maintenance.enqueue_in(timedelta(seconds=1), "service.workers.jobs.ping", "later")
    try:
        wait_until(lambda: redis_conn.get("calsync:ping:later"), timeout=15, interval=0.1,
                   message="the scheduled ping to run")
        registered = len(Worker.all(connection=redis_conn))
    finally:
        worker.stop()
        for thread in threads:
            thread.join(timeout=10)

    assert redis_conn.get("calsync:ping:later") == b"pong"
    assert registered == 1
    assert not any(thread.is_alive() for thread in threads)


HELD, RELEASE = threading.Event(), threading.Event()


def held_job() -> None:
    """A job that runs until the test lets it go (the in-process worker runs it in this process)."""
    HELD.set()
    RELEASE.wait(30)


def test_an_abandoned_embedded_worker_names_its_job_and_stops_listening_before_redis_goes(redis_conn, rt):
    """``calsync dev`` stops Redis last; a job still running then must not leave RQ's command-channel thread
    retrying a Redis that is gone (it did, once, on a starved CI machine)."""
    stop = threading.Event()
    worker = InProcessWorker(redis_conn, stop)
    thread = threading.Thread(target=worker.run)
    thread.start()
    job = queues.get_queue(queues.MAINTENANCE, redis_conn).enqueue("tests.foundation.test_queues.held_job")
    try:
        assert HELD.wait(15), "the held job never started"
        worker.stop()
        thread.join(timeout=1.5)     # the worker leaves only after its job: it is still running
        assert thread.is_alive()
        listening = worker.current.pubsub_thread

        assert worker.abandon() == job.id
        assert worker.current.pubsub_thread is None and not listening.is_alive()
    finally:
        RELEASE.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_scheduled_instant_is_rounded_up_to_the_whole_second_rq_keeps():
    from datetime import UTC, datetime

    from service.queues import not_before

    exact = datetime(2026, 3, 2, 9, 0, 7, tzinfo=UTC)
    assert not_before(exact) == exact
    assert not_before(exact.replace(microsecond=1)) == exact.replace(second=8)       # never a second early
    assert not_before(exact.replace(microsecond=999_999)) == exact.replace(second=8)
