"""Outlook's limits per app and mailbox: at most 4 requests in flight and 10,000 requests per 10 minutes; and the
subscription service's limit on writes (POST, PATCH, DELETE of /subscriptions) per app and tenant.

Graph answers a request over either mailbox limit with 429 ApplicationThrottled and a Retry-After header.
Concurrency counts the requests in flight for an (app id, mailbox) pair; the rate is a sliding 10-minute window on
the emulator clock over the requests admitted (throttled requests neither count nor extend the window). Limiting one
mailbox never affects another. The control API sets the limits (``None`` lifts one) and reads what was observed.

Subscription writes: graph/throttling-limits, "Subscription service limits", limit per app per tenant on POST, PUT,
DELETE, PATCH. Its revisions disagree on the figure (500, 1,000 and 2,000 requests per 20 seconds; an older one
5,000); the emulator takes 1,000, the one two revisions share, as a sliding 20-second window on the emulator clock per
(app id, tenant), answering 429 TooManyRequests with the seconds until the window frees a place. One tenant's
writes never limit another's.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.errors import GraphError, bad_request

WINDOW = dt.timedelta(minutes=10)
SUBSCRIPTION_WINDOW = dt.timedelta(seconds=20)
DEFAULTS = {"mailbox_concurrency": 4, "mailbox_requests_per_10_minutes": 10_000,
            "subscription_writes_per_20_seconds": 1_000}
CONCURRENCY = "MailboxConcurrency"
RATE = "MailboxRequestRate"
SUBSCRIPTION_WRITES = "SubscriptionWriteRate"
Key = tuple[str, str]  # (app id, mailbox user id)


@dataclass
class MailboxStats:
    """What one (app, mailbox) pair did since the limits were last set."""

    in_flight: int = 0
    peak: int = 0
    admitted: int = 0
    throttled: dict[str, int] = field(default_factory=dict)
    window: deque[dt.datetime] = field(default_factory=deque)  # when each admitted request of the window arrived


def parse_limits(data: object) -> dict[str, int | None]:
    """Validate a limits configuration (absent settings take Outlook's values; null lifts a limit)."""
    if not isinstance(data, dict):
        raise bad_request("The limits must be a JSON object.", "InvalidRequest")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise bad_request(f"Unknown limit settings: {', '.join(unknown)[:200]}.", "InvalidRequest")
    config: dict[str, int | None] = {}
    for name, default in DEFAULTS.items():
        value = data.get(name, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10**9):
            raise bad_request(f"'{name}' must be a positive integer or null.", "InvalidRequest")
        config[name] = value
    return config


class MailboxLimits:
    """Admission of Graph requests that address a mailbox, per (app id, mailbox)."""

    def __init__(self, clock: Callable[[], dt.datetime]):
        self.clock = clock
        self._lock = threading.Lock()
        self.config: dict[str, int | None] = dict(DEFAULTS)
        self.stats: dict[Key, MailboxStats] = {}
        self.tenant_writes: dict[Key, MailboxStats] = {}   # (app id, tenant id): subscription writes admitted

    def admit_subscription_write(self, app_id: str, tenant_id: str) -> None:
        """Count one subscription write of the app in the tenant, or raise 429 TooManyRequests over the limit."""
        now = self.clock()
        with self._lock:
            stats = self.tenant_writes.setdefault((app_id, tenant_id), MailboxStats())
            while stats.window and stats.window[0] <= now - SUBSCRIPTION_WINDOW:
                stats.window.popleft()
            rate = self.config["subscription_writes_per_20_seconds"]
            if rate is not None and len(stats.window) >= rate:
                frees = stats.window[len(stats.window) - rate] + SUBSCRIPTION_WINDOW
                wait = max(1, math.ceil((frees - now).total_seconds()))
                stats.throttled[SUBSCRIPTION_WRITES] = stats.throttled.get(SUBSCRIPTION_WRITES, 0) + 1
                raise GraphError(429, "TooManyRequests", "Please retry again later.", {"Retry-After": str(wait)})
            stats.window.append(now)
            stats.admitted += 1
            stats.peak = max(stats.peak, len(stats.window))

    def acquire(self, app_id: str, mailbox_id: str) -> Key:
        """Admit one request or raise 429 ApplicationThrottled; the caller must ``release`` what was admitted."""
        key = (app_id, mailbox_id)
        now = self.clock()
        with self._lock:
            stats = self.stats.setdefault(key, MailboxStats())
            concurrency = self.config["mailbox_concurrency"]
            if concurrency is not None and stats.in_flight >= concurrency:
                raise self._throttled(stats, CONCURRENCY, "Application is over its MailboxConcurrency limit.", 1)
            while stats.window and stats.window[0] <= now - WINDOW:
                stats.window.popleft()
            rate = self.config["mailbox_requests_per_10_minutes"]
            if rate is not None and len(stats.window) >= rate:
                frees = stats.window[len(stats.window) - rate] + WINDOW
                wait = max(1, math.ceil((frees - now).total_seconds()))
                message = f"Application is over its MailboxRequestRate limit of {rate} requests per 10 minutes."
                raise self._throttled(stats, RATE, message, wait)
            stats.window.append(now)
            stats.in_flight += 1
            stats.admitted += 1
            stats.peak = max(stats.peak, stats.in_flight)
        return key

    @staticmethod
    def _throttled(stats: MailboxStats, reason: str, message: str, retry_after: int) -> GraphError:
        stats.throttled[reason] = stats.throttled.get(reason, 0) + 1
        return GraphError(429, "ApplicationThrottled", message, {"Retry-After": str(retry_after)})

    def release(self, key: Key) -> None:
        """End an admitted request (also when it failed)."""
        with self._lock:
            stats = self.stats.get(key)
            if stats is not None and stats.in_flight > 0:
                stats.in_flight -= 1

    def configure(self, config: dict[str, int | None]) -> None:
        """Set the limits and start the statistics and rate windows afresh (requests in flight stay counted)."""
        with self._lock:
            self.config = dict(config)
            for key, stats in list(self.stats.items()):
                if stats.in_flight:
                    self.stats[key] = MailboxStats(in_flight=stats.in_flight, peak=stats.in_flight)
                else:
                    del self.stats[key]
            self.tenant_writes.clear()

    def reset(self) -> None:
        """Outlook's limits again, with fresh statistics."""
        self.configure(dict(DEFAULTS))

    def public(self) -> dict:
        """The limits; per (app, mailbox), peak concurrency, requests and throttled requests by reason; and per
        (app, tenant), subscription writes admitted, the most in one 20-second window and those throttled."""
        now = self.clock()
        with self._lock:
            totals: dict[str, int] = {CONCURRENCY: 0, RATE: 0, SUBSCRIPTION_WRITES: 0}
            tenants = []
            for (app_id, tenant_id), stats in self.tenant_writes.items():
                throttled = stats.throttled.get(SUBSCRIPTION_WRITES, 0)
                totals[SUBSCRIPTION_WRITES] += throttled
                tenants.append({"app_id": app_id, "tenant_id": tenant_id, "subscription_writes": stats.admitted,
                                "peak_writes_per_20_seconds": stats.peak, "throttled": throttled})
            mailboxes = []
            for (app_id, mailbox_id), stats in self.stats.items():
                while stats.window and stats.window[0] <= now - WINDOW:
                    stats.window.popleft()
                for reason, count in stats.throttled.items():
                    totals[reason] = totals.get(reason, 0) + count
                mailboxes.append({
                    "app_id": app_id, "mailbox_id": mailbox_id, "in_flight": stats.in_flight,
                    "peak_concurrency": stats.peak, "requests": stats.admitted,
                    "requests_in_window": len(stats.window), "throttled": dict(stats.throttled),
                })
            return dict(self.config) | {"throttled": totals, "mailboxes": mailboxes, "tenants": tenants}
