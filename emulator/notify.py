"""Delivery of change and lifecycle notifications: batching per URL, retries with back-off, a delivery log.

Notifications published within ``batch_window`` seconds of each other for the same URL go out in one
changeNotificationCollection POST. A 2xx within ``timeout`` seconds is delivered; anything else is retried
with exponential back-off (compressed by ``time_scale``) until ``give_up_after`` seconds, then dropped and
reported with a ``missed`` lifecycle notification. Delivery faults (duplicate, reorder, drop) come from Faults.

As Graph documents, change notifications for a subscription whose access token has expired are not sent
but held (checked again every ``pause_poll`` seconds) until the app reauthorizes or renews it, and dropped,
with ``missed``, after the same ``give_up_after``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

log = logging.getLogger(__name__)


@dataclass
class Pending:
    notification: dict
    subscription_id: str
    rich_audience: tuple[str, str] | None = None  # (app id, tenant id) for a validationToken


@dataclass
class Batch:
    url: str
    kind: str  # change | lifecycle
    items: list[Pending]
    attempt: int = 0
    first_try: float = 0.0
    held: bool = False
    paused: bool = False
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class Notifier:
    def __init__(
        self,
        *,
        session: requests.Session,
        faults,
        clock: Callable,
        sign: Callable[[str, str], str] | None = None,
        on_missed: Callable[[str], None] | None = None,
        is_active: Callable[[str, str], bool] | None = None,
        is_paused: Callable[[str], bool] | None = None,
        pause_poll: float = 1.0,
        time_scale: float = 1.0,
        batch_window: float = 0.05,
        max_batch: int = 100,
        timeout: float = 3.0,
        retry_timeout: float = 10.0,
        give_up_after: float = 4 * 3600.0,
        backoff_base: float = 5.0,
        log_size: int = 100_000,
        workers: int = 16,
    ):
        self.session = session
        self.faults = faults
        self.clock = clock
        self.sign = sign
        self.on_missed = on_missed
        self.is_active = is_active or (lambda _sid, _kind: True)
        self.is_paused = is_paused or (lambda _sid: False)
        self.pause_poll = pause_poll
        self.time_scale = time_scale
        self.batch_window = batch_window
        self.max_batch = max_batch
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.give_up_after = give_up_after
        self.backoff_base = backoff_base
        self.cond = threading.Condition()
        self.queues: dict[tuple[str, str], list[Pending]] = {}
        self.first_at: dict[tuple[str, str], float] = {}
        self.scheduled: list[tuple[float, int, Batch]] = []
        self.counter = itertools.count()
        self.inflight = 0
        self.stopped = False
        self.log: deque[dict] = deque(maxlen=log_size)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emulator-notify")
        self.thread = threading.Thread(target=self._run, name="emulator-dispatch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.thread.join(timeout=5)
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ publishing

    def publish(self, url: str, kind: str, item: Pending) -> None:
        """Queue one notification for ``url``; it leaves with whatever else arrives within the batch window."""
        if kind == "change" and self.faults.roll("drop_rate"):
            self._record(url, kind, [item], outcome="dropped", status=None, latency=0.0, attempt=0, body=None)
            if self.on_missed:
                self.on_missed(item.subscription_id)
            return
        key = (url, kind)
        with self.cond:
            queue = self.queues.setdefault(key, [])
            if kind == "lifecycle" and any(
                p.subscription_id == item.subscription_id
                and p.notification.get("lifecycleEvent") == item.notification.get("lifecycleEvent")
                for p in queue
            ):
                return
            queue.append(item)
            self.first_at.setdefault(key, time.monotonic())
            self.cond.notify_all()

    # ------------------------------------------------------------ dispatching

    def _run(self) -> None:
        while True:
            with self.cond:
                if self.stopped:
                    return
                ready, wait = self._take_ready(time.monotonic())
                if not ready:
                    self.cond.wait(timeout=wait)
                    continue
                self.inflight += len(ready)
            for batch in ready:
                self.executor.submit(self._deliver, batch)

    def _take_ready(self, now: float) -> tuple[list[Batch], float]:
        ready: list[Batch] = []
        wait = 0.5
        for key in list(self.queues):
            queue = self.queues[key]
            due = self.first_at[key] + self.batch_window
            if len(queue) >= self.max_batch or due <= now:
                while queue:
                    chunk, queue[:] = queue[: self.max_batch], queue[self.max_batch:]
                    ready.append(Batch(key[0], key[1], chunk, first_try=now))
                del self.queues[key], self.first_at[key]
            else:
                wait = min(wait, due - now)
        while self.scheduled and self.scheduled[0][0] <= now:
            ready.append(heapq.heappop(self.scheduled)[2])
        if self.scheduled:
            wait = min(wait, self.scheduled[0][0] - now)
        return ready, max(wait, 0.001)

    def _schedule(self, batch: Batch, delay: float) -> None:
        with self.cond:
            heapq.heappush(self.scheduled, (time.monotonic() + delay, next(self.counter), batch))
            self.cond.notify_all()

    def _deliver(self, batch: Batch) -> None:
        try:
            self._attempt(batch)
        except Exception:  # a delivery bug must not wedge the idle accounting
            log.exception("emulator: delivery to %s failed unexpectedly", batch.url)
        finally:
            with self.cond:
                self.inflight -= 1
                self.cond.notify_all()

    def _attempt(self, batch: Batch) -> None:
        batch.items = [p for p in batch.items if self.is_active(p.subscription_id, batch.kind)]
        if batch.kind == "change":
            paused = {sid for sid in {p.subscription_id for p in batch.items} if self.is_paused(sid)}
            if paused:
                self._hold(Batch(batch.url, batch.kind, [p for p in batch.items if p.subscription_id in paused],
                                 attempt=batch.attempt, first_try=batch.first_try, paused=batch.paused))
                batch.items = [p for p in batch.items if p.subscription_id not in paused]
        if not batch.items:
            return
        if batch.kind == "change" and not batch.held and batch.attempt == 0 and self.faults.roll("reorder_rate"):
            batch.held = True
            self._schedule(batch, self.batch_window * 4 + 0.05)
            return
        body = self._body(batch)
        status, latency, error = self._post(batch.url, body, self.timeout if batch.attempt == 0 else self.retry_timeout)
        delivered = status is not None and 200 <= status < 300
        self._record(batch.url, batch.kind, batch.items, outcome="delivered" if delivered else "failed",
                     status=status, latency=latency, attempt=batch.attempt, body=body, error=error)
        if delivered:
            if batch.kind == "change" and self.faults.roll("duplicate_rate"):
                status, latency, error = self._post(batch.url, body, self.timeout)
                self._record(batch.url, batch.kind, batch.items, outcome="duplicate", status=status,
                             latency=latency, attempt=batch.attempt, body=body, error=error)
            return
        batch.attempt += 1
        delay = min(self.backoff_base * 2 ** (batch.attempt - 1), 3600.0)
        if (time.monotonic() - batch.first_try) + delay * self.time_scale > self.give_up_after * self.time_scale:
            self._record(batch.url, batch.kind, batch.items, outcome="gave_up", status=None, latency=0.0,
                         attempt=batch.attempt, body=None)
            if batch.kind == "change" and self.on_missed:
                for sid in {p.subscription_id for p in batch.items}:
                    self.on_missed(sid)
            return
        self._schedule(batch, delay * self.time_scale)

    def _hold(self, batch: Batch) -> None:
        """Keep notifications of token-expired subscriptions until reauthorized; give up like failed ones."""
        if time.monotonic() - batch.first_try > self.give_up_after * self.time_scale:
            self._record(batch.url, batch.kind, batch.items, outcome="gave_up", status=None, latency=0.0,
                         attempt=batch.attempt, body=None)
            if self.on_missed:
                for sid in {p.subscription_id for p in batch.items}:
                    self.on_missed(sid)
            return
        if not batch.paused:
            batch.paused = True
            self._record(batch.url, batch.kind, batch.items, outcome="paused", status=None, latency=0.0,
                         attempt=batch.attempt, body=None)
        self._schedule(batch, self.pause_poll * self.time_scale)

    def _body(self, batch: Batch) -> dict:
        body: dict = {"value": [p.notification for p in batch.items]}
        audiences = sorted({p.rich_audience for p in batch.items if p.rich_audience})
        if audiences and self.sign is not None:
            body["validationTokens"] = [self.sign(app_id, tenant_id) for app_id, tenant_id in audiences]
        return body

    def _post(self, url: str, body: dict, timeout: float) -> tuple[int | None, float, str | None]:
        started = time.monotonic()
        try:
            response = self.session.post(url, json=body, timeout=timeout)
            response.close()
            return response.status_code, time.monotonic() - started, None
        except requests.Timeout:
            return None, time.monotonic() - started, "timeout"
        except requests.RequestException as exc:
            return None, time.monotonic() - started, type(exc).__name__

    # ------------------------------------------------------------ log and idleness

    def _record(self, url: str, kind: str, items: list[Pending], *, outcome: str, status: int | None,
                latency: float, attempt: int, body: dict | None, error: str | None = None) -> None:
        self.log.append({
            "id": str(uuid.uuid4()),
            "at": self.clock().isoformat(),
            "kind": kind,
            "url": url,
            "outcome": outcome,
            "status": status,
            "error": error,
            "latency_ms": round(latency * 1000, 1),
            "attempt": attempt,
            "subscription_ids": sorted({p.subscription_id for p in items}),
            "count": len(items),
            "body": body if body is not None else {"value": [p.notification for p in items]},
        })

    def record_validation(self, url: str, status: int | None, latency: float, error: str | None,
                          outcome: str) -> None:
        self.log.append({
            "id": str(uuid.uuid4()), "at": self.clock().isoformat(), "kind": "validation", "url": url,
            "outcome": outcome, "status": status, "error": error, "latency_ms": round(latency * 1000, 1),
            "attempt": 0, "subscription_ids": [], "count": 0, "body": None,
        })

    def busy(self) -> bool:
        return bool(self.queues or self.scheduled or self.inflight)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued, scheduled for retry or in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.busy():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(timeout=min(remaining, 0.05))
        return True

    def entries(self) -> list[dict]:
        return list(self.log)

    def clear(self) -> None:
        self.log.clear()
