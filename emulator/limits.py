"""Outlook's limits per app and mailbox: at most 4 requests in flight and 10,000 requests per 10 minutes.

Graph answers a request over either limit with 429 ApplicationThrottled and a Retry-After header. Concurrency counts
the requests in flight for an (app id, mailbox) pair; the rate is a sliding 10-minute window on the emulator clock
over the requests admitted (throttled requests neither count nor extend the window). Limiting one mailbox never
affects another. The control API sets both limits (``None`` lifts one) and reads what was observed.
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
DEFAULTS = {"mailbox_concurrency": 4, "mailbox_requests_per_10_minutes": 10_000}
CONCURRENCY = "MailboxConcurrency"
RATE = "MailboxRequestRate"
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

    def reset(self) -> None:
        """Outlook's limits again, with fresh statistics."""
        self.configure(dict(DEFAULTS))

    def public(self) -> dict:
        """The limits and, per (app, mailbox), peak concurrency, requests and throttled requests by reason."""
        now = self.clock()
        with self._lock:
            totals: dict[str, int] = {CONCURRENCY: 0, RATE: 0}
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
            return dict(self.config) | {"throttled": totals, "mailboxes": mailboxes}
