"""The rq worker class the Procfile runs: ``rq worker -w service.workers.worker.Worker``.

It reads the settings when it starts (a bad one stops it with one line and exit code 2, as every calsync
process does) and installs the process's Runtime for the jobs it runs. Clients are built lazily, so each
forked work horse opens its own MongoDB and Redis connections.
"""

from __future__ import annotations

import sys

from rq import Worker as RQWorker

from service.config import ConfigError, Settings
from service.logs import configure
from service.runtime import Runtime
from service.workers import context


class Worker(RQWorker):
    def __init__(self, *args, **kwargs):
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            print(f"calsync: configuration error: {exc}", file=sys.stderr)  # noqa: T201
            raise SystemExit(2) from None
        configure(settings)
        context.install(Runtime(settings))
        super().__init__(*args, **kwargs)
