"""The rq worker class the Procfile runs: ``rq worker -w service.workers.worker.Worker``.

It reads the settings when it starts (a bad one stops it with one line and exit code 2, as every calsync
process does) and installs the process's Runtime for the jobs it runs. Clients are built lazily, so each
forked work horse opens its own MongoDB and Redis connections. Each job runs with its ids in the log
context and its metrics recorded in the work horse (``service.workers.observe``).
"""

from __future__ import annotations

import os
import sys

from rq import Worker as RQWorker

from service import metrics
from service.config import ConfigError, Settings
from service.logs import configure
from service.runtime import Runtime
from service.workers import context
from service.workers.observe import ObservedJobs

# RQ moves scheduled jobs (retries, throttled and re-checked syncs) onto their queues from one worker, the
# holder of its scheduler lock. When that worker is SIGKILLed its lock lapses after about a minute, but the
# others only try to take it over in their maintenance pass, every 10 minutes by default: until then no
# retry runs anywhere. A pass every 30 s bounds that to about 90 s (the pass is one worker's at a time).
MAINTENANCE_SECONDS = 30


class Worker(ObservedJobs, RQWorker):
    def __init__(self, *args, **kwargs):
        kwargs["maintenance_interval"] = min(kwargs.get("maintenance_interval") or MAINTENANCE_SECONDS,
                                             MAINTENANCE_SECONDS)
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            print(f"calsync: configuration error: {exc}", file=sys.stderr)  # noqa: T201
            raise SystemExit(2) from None
        configure(settings)
        context.install(Runtime(settings))
        super().__init__(*args, **kwargs)

    def main_work_horse(self, job, queue):
        metrics.entered_work_horse(os.getppid())  # this worker's horses share one metrics file
        return super().main_work_horse(job, queue)
