"""Run RQ jobs inside this process: the embedded mode's worker and the tests' job runner.

With the in-memory MongoDB the jobs must run where the store lives, so ``calsync dev`` runs a
``SimpleWorker`` (no fork) in a thread. Signal handlers belong to the main thread, and SIGALRM-based
job timeouts cannot work off it, so this worker skips the former and uses RQ's timer-based death penalty.
"""

from __future__ import annotations

import logging
import threading

from redis import Redis
from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty

from service.workers import queues

log = logging.getLogger(__name__)


class ThreadWorker(SimpleWorker):
    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """The main thread owns signals; the thread's owner stops us through ``drain``'s event."""


def work_burst(connection: Redis, names: tuple[str, ...] = queues.ALL) -> bool:
    """Run every job that is queued (or scheduled and due) now; True if any ran."""
    worker = ThreadWorker([queues.get_queue(name, connection) for name in names], connection=connection)
    return worker.work(burst=True, with_scheduler=True, logging_level="WARNING")


def drain_forever(connection: Redis, stop: threading.Event, idle_wait: float = 0.2) -> None:
    """Keep working until ``stop`` is set: the embedded worker thread's loop."""
    while not stop.is_set():
        try:
            if not work_burst(connection):
                stop.wait(idle_wait)
        except Exception:  # a Redis blip must not end the dev worker; RQ already recorded job failures
            log.exception("in-process worker loop failed; retrying")
            stop.wait(1.0)
