"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app

from service import store

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


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
        rt.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        log.warning("Redis unreachable (%s)", type(exc).__name__)
        checks["redis"] = "unreachable"
    return checks
