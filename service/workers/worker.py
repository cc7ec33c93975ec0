"""The rq worker class the Procfile runs: ``rq worker -w service.workers.worker.Worker``.

It reads the settings when it starts (a bad one stops it with one line and exit code 2, as every calsync
process does) and installs the process's Runtime for the jobs it runs. Each job runs with its ids in the
log context and its metrics recorded (``service.workers.observe``).

Jobs run in the worker process itself (RQ's ``SimpleWorker``), not in a work horse forked per job, so the
Runtime's MongoDB pool, Redis connection, HTTPS keep-alive connections to Graph and MSAL's discovery cache
live across jobs. A sync job is short and waits on I/O (bench P3: 33 ms median); forking for each one
doubled it (66 ms: the fork, then new MongoDB, Redis and TLS connections and MSAL's discovery, every
time), and at 200 changes/s over 50 users freshness p99 went from 2.5 s forking to 1.1 s. What the fork
gave, we keep otherwise: a job's time limit is RQ's SIGALRM in the main thread, as in a horse; and, as a
forking worker's main loop does while its horse runs, a thread renews the heartbeats of the worker and
of the running job every ``job_monitoring_interval`` (30 s) with a short TTL. RQ's SimpleWorker sets one
heartbeat of the job's whole timeout plus a minute instead (360 s for a sync), so a worker SIGKILLed
mid-job left its job looking alive for six minutes before RQ retried it; now RQ's registry cleanup
finds it abandoned after 90 s and retries it under the same id, which takes its user's lock back at once.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rq import SimpleWorker
from rq.worker import BaseWorker

from service.config import ConfigError, Settings
from service.logs import configure
from service.runtime import Runtime, install
from service.workers.observe import ObservedJobs

# RQ moves scheduled jobs (retries, throttled and re-checked syncs) onto their queues from one worker, the
# holder of its scheduler lock. When that worker is SIGKILLed its lock lapses after about a minute, but the
# others only try to take it over in their maintenance pass, every 10 minutes by default: until then no
# retry runs anywhere. A pass every 30 s bounds that to about 90 s (the pass is one worker's at a time).
MAINTENANCE_SECONDS = 30

log = logging.getLogger(__name__)


class Worker(ObservedJobs, SimpleWorker):
    def __init__(self, *args, **kwargs):
        kwargs["maintenance_interval"] = min(kwargs.get("maintenance_interval") or MAINTENANCE_SECONDS,
                                             MAINTENANCE_SECONDS)
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            print(f"calsync: configuration error: {exc}", file=sys.stderr)  # noqa: T201
            raise SystemExit(2) from None
        configure(settings)
        install(Runtime(settings))
        super().__init__(*args, **kwargs)

    def perform_job(self, job, queue, execution) -> bool:
        with _heartbeats(self, job, execution):
            return super().perform_job(job, queue, execution)

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        return BaseWorker.get_heartbeat_ttl(self, job, working_time)   # short: ``_heartbeats`` renews it


@contextmanager
def _heartbeats(worker: BaseWorker, job, execution) -> Iterator[None]:
    """Renew the worker's, the execution's and the job's heartbeats while the job runs in this thread."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(worker.job_monitoring_interval):
            try:
                worker.maintain_heartbeats(job, execution)
            except Exception as exc:  # noqa: BLE001 - Redis away: the next beat tries again, the job goes on
                log.warning("worker: could not renew the heartbeat of job %s: %s", job.id, type(exc).__name__)

    thread = threading.Thread(target=beat, name=f"rq-heartbeat-{job.id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
