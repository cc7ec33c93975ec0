"""The scheduler process: enqueues periodic jobs; exactly one acts even if several run.

Each task runs once per period of the wall clock, at its start (within the tick's 5 s): the prep tick at each
whole minute, so a prep due at 09:45 goes at 09:45, not up to a minute later as "60 s since the last run" would.

Leadership is the scheduler's lock (``service.locks``, owned by this scheduler's identity, kept alive on
every tick, taken over when it lapses). Each periodic task's last run is kept in Redis, so a new leader
does not re-run what the old one just did.
RQ's own ``rq cron`` is not used because it has no lock: two of them enqueue everything twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from service import locks, queues

log = logging.getLogger(__name__)

LEADER_KEY = "calsync:scheduler:leader"
LAST_RUN_KEY = "calsync:scheduler:last:{name}"
LEASE_SECONDS = 30


@dataclass(frozen=True)
class Periodic:
    name: str
    every_seconds: int
    func: str          # a job name from service.queues
    queue: str


PERIODIC: tuple[Periodic, ...] = (
    Periodic("renewal-sweep", 300, queues.RENEWAL_SWEEP, queues.MAINTENANCE),
    Periodic("reconcile-sweep", 900, queues.RECONCILE_SWEEP, queues.MAINTENANCE),
    Periodic("window-roll", 3600, queues.WINDOW_ROLL_SWEEP, queues.MAINTENANCE),
    Periodic("digest-tick", 60, queues.DIGEST_TICK, queues.DIGEST),
    Periodic("prep-tick", 60, queues.PREP_TICK, queues.PREP),
    Periodic("retention", 86_400, queues.RETENTION_SWEEP, queues.MAINTENANCE),
    Periodic("calendar-poll", 300, queues.CALENDAR_POLL_SWEEP, queues.MAINTENANCE),
    Periodic("outbox-sweep", 60, queues.OUTBOX_SWEEP, queues.OUTBOUND),
    Periodic("tenant-directory", 3600, queues.TENANT_SWEEP, queues.MAINTENANCE),
    Periodic("working-hours-sweep", 86_400, queues.WORKING_HOURS_SWEEP, queues.MAINTENANCE),
    Periodic("weeks-sweep", 3600, queues.WEEKS_SWEEP, queues.MAINTENANCE),
)


class Scheduler:
    def __init__(self, connection: Redis, tasks: tuple[Periodic, ...] = PERIODIC, identity: str | None = None,
                 watch: Callable[[], str] | None = None):
        self.connection = connection
        self.watch = watch   # the Redis epoch check (service.recovery), run by every scheduler before each tick
        self.tasks = tasks
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.lock = locks.lock(connection, LEADER_KEY, LEASE_SECONDS, token=self.identity)

    def is_leader(self) -> bool:
        """Take or keep the lock; True if this scheduler may act now."""
        return locks.take(self.lock)

    def tick(self, now: float | None = None) -> list[str]:
        """Enqueue every task that is due; returns their names. Does nothing unless leader."""
        if not self.is_leader():
            return []
        now = time.time() if now is None else now
        enqueued = []
        for task in self.tasks:
            key = LAST_RUN_KEY.format(name=task.name)
            last = float(self.connection.get(key) or 0)
            if now // task.every_seconds <= last // task.every_seconds:
                continue    # not yet run in this period of the clock (each minute, hour, day: UTC)
            self.connection.set(key, now)
            queues.enqueue(self.connection, task.queue, task.func, retry=None)
            enqueued.append(task.name)
        if enqueued:
            log.info("scheduler enqueued %s", ", ".join(enqueued))
        return enqueued

    def resign(self) -> None:
        if self.lock.owned():
            locks.release(self.lock)

    def run(self, stop: threading.Event, interval: float = 5.0) -> None:
        """Tick until ``stop`` is set; Redis errors are logged and retried, never fatal."""
        log.info("scheduler %s started", self.identity)
        while not stop.is_set():
            try:
                if self.watch is not None:
                    self.watch()
                self.tick()
            except Exception:  # a Redis blip must not kill the scheduler process
                log.exception("scheduler tick failed; retrying in %.0fs", interval)
            stop.wait(interval)
        self.resign()
