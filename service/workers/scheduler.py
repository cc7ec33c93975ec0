"""The scheduler process: enqueues periodic jobs; exactly one acts even if several run.

Leadership is a Redis lease (SET NX PX, renewed by the holder, taken over when it lapses). Each
periodic task's last run is kept in Redis, so a new leader does not re-run what the old one just did.
RQ's own ``rq cron`` is not used because it has no lock: two of them enqueue everything twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from redis import Redis

from service.workers import queues
from service.workers.lease import Lease

log = logging.getLogger(__name__)

LEADER_KEY = "calsync:scheduler:leader"
LAST_RUN_KEY = "calsync:scheduler:last:{name}"
LEASE_SECONDS = 30


@dataclass(frozen=True)
class Periodic:
    name: str
    every_seconds: int
    func: str          # dotted path, so this module imports no domain code
    queue: str


PERIODIC: tuple[Periodic, ...] = (
    Periodic("renewal-sweep", 300, "service.subscriptions.jobs.renewal_sweep", queues.MAINTENANCE),
    Periodic("reconcile-sweep", 900, "service.workers.jobs.reconcile_sweep", queues.MAINTENANCE),
    Periodic("window-roll", 3600, "service.workers.jobs.window_roll_sweep", queues.MAINTENANCE),
    Periodic("digest-tick", 60, "service.digest.jobs.digest_tick", queues.DIGEST),
)

class Scheduler:
    def __init__(self, connection: Redis, tasks: tuple[Periodic, ...] = PERIODIC, identity: str | None = None):
        self.connection = connection
        self.tasks = tasks
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.lease = Lease(connection, LEADER_KEY, self.identity, LEASE_SECONDS * 1000)

    def is_leader(self) -> bool:
        """Take or keep the lease; True if this scheduler may act now."""
        return self.lease.acquire()

    def tick(self, now: float | None = None) -> list[str]:
        """Enqueue every task that is due; returns their names. Does nothing unless leader."""
        if not self.is_leader():
            return []
        now = time.time() if now is None else now
        enqueued = []
        for task in self.tasks:
            key = LAST_RUN_KEY.format(name=task.name)
            last = float(self.connection.get(key) or 0)
            if now - last < task.every_seconds:
                continue
            self.connection.set(key, now)
            queues.enqueue(self.connection, task.queue, task.func, retry=None)
            enqueued.append(task.name)
        if enqueued:
            log.info("scheduler enqueued %s", ", ".join(enqueued))
        return enqueued

    def resign(self) -> None:
        self.lease.release()

    def run(self, stop: threading.Event, interval: float = 5.0) -> None:
        """Tick until ``stop`` is set; Redis errors are logged and retried, never fatal."""
        log.info("scheduler %s started", self.identity)
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a Redis blip must not kill the scheduler process
                log.exception("scheduler tick failed; retrying in %.0fs", interval)
            stop.wait(interval)
        self.resign()
