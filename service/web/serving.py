"""Serving the web app with gunicorn: the settings a web process needs, and gunicorn's hooks.

A web process that cannot start must stop gunicorn, not make it restart workers forever: gunicorn halts
when a worker exits with code 3 (its "worker failed to boot"), so that is the code used here, after one
line naming the problem. ``gunicorn.conf.py`` (read by gunicorn from the working directory) runs the same
check in the master before any worker is forked, so the line is printed once.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import NoReturn

from service import metrics
from service.config import ConfigError, Settings

BOOT_ERROR = 3   # gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR


def web_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings for a gunicorn web process; ConfigError names what stops it."""
    settings = Settings.from_env(environ)
    if settings.embedded_redis:
        # Each gunicorn worker would start its own Redis, and the webhooks would queue work no worker sees.
        raise ConfigError("REDIS_URL: must be set to serve with gunicorn (for embedded mode run `calsync dev`)")
    return settings


def refuse_to_start(exc: ConfigError) -> NoReturn:
    print(f"calsync: configuration error: {exc}", file=sys.stderr, flush=True)  # noqa: T201
    raise SystemExit(BOOT_ERROR)


def on_starting(server) -> None:
    """gunicorn hook, in the master before it binds or forks: a bad setting stops it with one line."""
    try:
        web_settings()
    except ConfigError as exc:
        refuse_to_start(exc)


def child_exit(server, worker) -> None:
    """gunicorn hook: a worker exited; its live gauges go (prometheus-client's multiprocess bookkeeping)."""
    metrics.mark_process_dead(worker.pid)
