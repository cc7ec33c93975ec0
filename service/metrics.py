"""Prometheus metrics: what every calsync process records, and the exposition the web serves.

One process (``calsync dev`` embedded, the tests) keeps its samples in memory. Under gunicorn and rq
(several processes) ``PROMETHEUS_MULTIPROC_DIR`` is set before anything
starts: each process writes its samples to files there and a scrape of any gunicorn worker adds them all
up (prometheus-client's multiprocess mode). Whoever starts the processes empties the directory first
(``reset_multiprocess_dir``); gunicorn's ``child_exit`` hook calls ``mark_process_dead``.

rq workers run their jobs in their own process (``service.workers.worker``), so the directory holds one
file per process and metric type, never one per job.

Counters and histograms are recorded where things happen; gauges (users, subscriptions, queue lengths)
are read at scrape time from cheap counts by ``service.ops.metrics``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


disable_created_metrics()  # no *_created series: multiprocess mode has none either, so both look alike
if multiprocess_dir():
    # prometheus-client chose its multiprocess values when it was imported (it reads the same variable);
    # their files go here, so the directory must exist before the first sample.
    Path(multiprocess_dir()).mkdir(parents=True, exist_ok=True)


WEBHOOK_NOTIFICATIONS = Counter(
    "calsync_webhook_notifications", "Notification items received from Graph, by route and result.",
    ["route", "result"])
WEBHOOK_DROPPED = Counter(
    "calsync_webhook_dropped_notifications", "Notification items dropped, by route and reason.",
    ["route", "reason"])
WEBHOOK_SECONDS = Histogram(
    "calsync_webhook_handling_seconds", "Time to answer a Graph webhook request, by route and status.",
    ["route", "status"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0))
STORED_LAG = Histogram(
    "calsync_notification_to_stored_seconds",
    "From an event's change at Graph (its lastModifiedDateTime, when Graph notifies) to its being stored.",
    buckets=(0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0))
GRAPH_SECONDS = Histogram(
    "calsync_graph_request_duration_seconds", "Duration of each Graph HTTP request, by method and status.",
    ["method", "status"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
SUBSCRIPTION_OPERATIONS = Counter(
    "calsync_subscription_operations", "Subscription operations, by outcome.", ["outcome"])
JOBS = Counter("calsync_jobs", "RQ jobs run, by queue, function and status.", ["queue", "function", "status"])
JOB_SECONDS = Histogram(
    "calsync_job_duration_seconds", "Duration of RQ jobs, by queue.", ["queue"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0))
HTTP_REQUESTS = Counter(
    "calsync_http_requests", "HTTP requests served, by endpoint, method and status.", ["endpoint", "method", "status"])
HTTP_SECONDS = Histogram(
    "calsync_http_request_duration_seconds", "Time to answer HTTP requests, by endpoint.", ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
HTTP_IN_FLIGHT = Gauge(
    "calsync_http_requests_in_flight", "HTTP requests being answered now.", multiprocess_mode="livesum")


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """The text exposition: every process's counters and histograms, then ``extra`` collectors (gauges)."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        _multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Proxy(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


class _Proxy(Collector):
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()


def reset_multiprocess_dir(path: str | os.PathLike | None = None) -> Path | None:
    """Empty (creating it if needed) the directory; before the processes that write to it start."""
    path = path or multiprocess_dir()
    if not path:
        return None
    directory = Path(path)
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.suffix == ".db" and entry.is_file():
                entry.unlink()
    elif directory.exists():
        raise ValueError(f"{MULTIPROC_ENV}: {directory} is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def mark_process_dead(pid: int) -> None:
    """A gunicorn worker exited: drop its live gauges (its counters stay, as counters should)."""
    if multiprocess_dir():
        _multiprocess.mark_process_dead(pid)
