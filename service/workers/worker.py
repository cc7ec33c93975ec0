"""The rq worker class the Procfile runs: ``rq worker -w service.workers.worker.Worker``.

It reads the settings when it starts (a bad one stops it with one line and exit code 2, as every calsync
process does) and installs the process's Runtime for the jobs it runs.

Jobs run in the worker process itself (RQ's ``SimpleWorker``), not in a work horse forked per job: the
Runtime's clients then live across jobs - the HTTPS connections to Graph stay open, MSAL's authority
metadata is fetched once, MongoDB's pool stays warm. py-spy on the forking worker under P3's load
(bench/RESULTS.md) found two thirds of each sync job in TLS handshakes to Graph and a fifth in MSAL's
tenant discovery, both redone in every fresh horse. Job timeouts still hold (SIGALRM in the main thread);
a job that crashes the process takes the worker with it, and the platform restarts it (RQ then fails the
abandoned job into its retries, as it does for a killed horse).
"""

from __future__ import annotations

import sys

from rq import SimpleWorker

from service.config import ConfigError, Settings
from service.logs import configure
from service.runtime import Runtime
from service.workers import context


class Worker(SimpleWorker):
    def __init__(self, *args, **kwargs):
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            print(f"calsync: configuration error: {exc}", file=sys.stderr)  # noqa: T201
            raise SystemExit(2) from None
        configure(settings)
        context.install(Runtime(settings))
        super().__init__(*args, **kwargs)
