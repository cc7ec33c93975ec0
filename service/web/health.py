"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app
from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service import store

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)
PROBE_SECONDS = 1.0   # Redis's own share of the probe's ~2 s


@bp.get("/healthz")
def healthz():
    """The process is alive and serving requests."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """MongoDB and Redis both answer (each within ~2 s), else 503 naming what failed."""
    checks = probe(current_app.extensions["calsync"])
    failed = sorted(name for name, state in checks.items() if state != "ok")
    body = {"status": "ready" if not failed else "unavailable", "checks": checks}
    if failed:
        body["failed"] = failed
    return body, (200 if not failed else 503)


def probe(rt) -> dict[str, str]:
    """``{"mongodb": "ok" | "unreachable", "redis": ...}``: one quick ping each (about 2 s at most)."""
    checks = {}
    try:
        store.ping(rt.db)
        checks["mongodb"] = "ok"
    except Exception as exc:  # any driver error means "not ready"; the type is enough detail
        log.warning("MongoDB unreachable (%s)", type(exc).__name__)
        checks["mongodb"] = "unreachable"
    try:
        _ping(rt.redis)
        checks["redis"] = "ok"
    except Exception as exc:
        log.warning("Redis unreachable (%s)", type(exc).__name__)
        checks["redis"] = "unreachable"
    return checks


def _ping(client: Redis) -> None:
    """One PING over a connection of the probe's own, with short timeouts and no retry: the shared client's
    5 s socket timeout and its retry suit work, but a Redis that accepts and never answers would hold the
    probe for 10 s."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": PROBE_SECONDS, "socket_connect_timeout": PROBE_SECONDS,
              "retry": Retry(NoBackoff(), 0)}
    probe_pool = ConnectionPool(connection_class=pool.connection_class, max_connections=1, **kwargs)
    try:
        Redis(connection_pool=probe_pool).ping()
    finally:
        probe_pool.disconnect()
