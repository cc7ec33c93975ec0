"""``/ops/metrics`` and ``/metrics`` (behind the ops token): the Prometheus exposition.

Counters and histograms come from every process (``service.metrics``); the gauges here are read at scrape
time from cheap counts: RQ's queue lengths and registries (LLEN, ZCARD), the worker set's size, and
MongoDB counts answered from an index or the collection's metadata, never a collection scan. A dependency
that does not answer is reported as ``calsync_dependency_up{dependency=...} 0`` and its gauges are left
out; the scrape itself still succeeds.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError
from rq import Worker

from service import metrics, store
from service.ops import queues as queue_health
from service.ops.routes import EXPIRING_SOON, ops_required
from service.store import ops as ops_store
from service.web import health
from service.web.csrf import csrf

log = logging.getLogger(__name__)

bp = Blueprint("ops_metrics", __name__)
csrf.exempt(bp)

QUEUE_STATES = ("queued", "started", "scheduled", "deferred", "failed")


@bp.get("/ops/metrics")
@bp.get("/metrics")
@ops_required
def exposition():
    """Prometheus text exposition (HELP and TYPE included)."""
    body = metrics.exposition([StateCollector(current_app.extensions["calsync"])])
    return body, 200, {"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"}


class StateCollector(Collector):
    """Gauges for one scrape, from the Runtime's MongoDB and Redis."""

    def __init__(self, runtime):
        self.runtime = runtime

    def collect(self):
        up = health.probe(self.runtime)
        yield from self._mongodb() if up["mongodb"] == "ok" else ()
        redis_ok = up["redis"] == "ok"
        if redis_ok:
            try:
                yield from self._redis()
            except RedisError as exc:
                log.warning("metrics: Redis failed mid-scrape (%s)", type(exc).__name__)
                up["redis"] = "unreachable"
        family = GaugeMetricFamily("calsync_dependency_up", "1 when the dependency answered this scrape, else 0.",
                                   labels=["dependency"])
        for name, state in sorted(up.items()):
            family.add_metric([name], 1 if state == "ok" else 0)
        yield family

    def _mongodb(self):
        try:
            counts = ops_store.gauge_counts(self.runtime.db, store.utcnow(), EXPIRING_SOON)
        except PyMongoError as exc:
            log.warning("metrics: MongoDB failed mid-scrape (%s)", type(exc).__name__)
            return
        users = GaugeMetricFamily("calsync_users", "Users by connection status.", labels=["status"])
        for status, value in counts["users"].items():
            users.add_metric([status], value)
        subscriptions = GaugeMetricFamily("calsync_subscriptions", "Subscriptions by status.", labels=["status"])
        for status, value in counts["subscriptions"].items():
            subscriptions.add_metric([status], value)
        yield users
        yield subscriptions
        yield GaugeMetricFamily("calsync_subscriptions_expiring_soon", "Subscriptions expiring within 24 hours.",
                                value=counts["subscriptions_expiring_soon"])
        yield GaugeMetricFamily("calsync_subscriptions_expired", "Subscriptions past their expiry.",
                                value=counts["subscriptions_expired"])
        yield GaugeMetricFamily("calsync_events_stored", "Stored events (the collection's estimated count).",
                                value=counts["events_stored"])

    def _redis(self):
        connection = self.runtime.redis
        rows = queue_health.queue_health(connection)
        workers = Worker.count(connection=connection)
        jobs = GaugeMetricFamily("calsync_queue_jobs", "RQ jobs by queue and state.", labels=["queue", "state"])
        for row in rows:
            for state in QUEUE_STATES:
                jobs.add_metric([row["queue"], state], row[state])
        yield jobs
        yield GaugeMetricFamily("calsync_workers", "RQ workers registered.", value=workers)
