import os
import shlex
import subprocess
import sys
from pathlib import Path

from service.workers import queues

ROOT = Path(__file__).resolve().parents[2]


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        process, _, command = line.partition(":")
        if process.strip() == name:
            return command.strip()
    raise AssertionError(f"no {name} line in the Procfile")


def test_queue_order_is_the_priority_order():
    assert queues.ALL == ("sync", "subscriptions", "digest", "maintenance")


def test_procfile_worker_line_runs_a_queued_job_in_a_real_rq_worker(redis_conn, redis_url):
    job = queues.enqueue(redis_conn, queues.MAINTENANCE, "service.workers.jobs.ping", "procfile")
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
