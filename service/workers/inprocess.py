"""Run RQ jobs inside this process: the embedded mode's worker and the tests' job runner.

With the in-memory MongoDB the jobs must run where the store lives, so ``calsync dev`` runs a
``SimpleWorker`` (no fork) in a thread. Signal handlers belong to the main thread, and SIGALRM-based
job timeouts cannot work off it, so this worker skips the former and uses RQ's timer-based death penalty.
"""

from __future__ import annotations

import logging
import threading

import redis
from redis import Redis
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from rq.timeouts import TimerDeathPenalty

from service import queues
from service.sync import dispatch
from service.workers.observe import ObservedJobs

log = logging.getLogger(__name__)


class ThreadWorker(ObservedJobs, SimpleWorker):
    death_penalty_class = TimerDeathPenalty
    POLL_SECONDS = 1

    def _install_signal_handlers(self) -> None:
        """The main thread owns signals; InProcessWorker.stop() asks us to stop instead."""

    def heartbeat(self, *args, **kwargs):
        """RQ retries a lost Redis forever inside its wait; once asked to stop, leave instead (RQ's own
        StopRequested ends ``work()`` quietly)."""
        if self._stop_requested and getattr(self, "_waiting", False):
            raise StopRequested
        return super().heartbeat(*args, **kwargs)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """Wait for a job in short polls so that a stop request is seen within a second.

        RQ's own wait blocks until a job arrives and only a signal handler can interrupt it; a thread has
        none. Returning None ends ``work()``, so this only does when asked to stop (or RQ's own
        ``max_idle_time`` ran out, as in a burst).
        """
        if timeout is None or max_idle_time is not None:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            self._waiting = True   # only between jobs may heartbeat() end the wait (see heartbeat)
            try:
                result = super().dequeue_job_and_maintain_ttl(self.POLL_SECONDS, max_idle_time=self.POLL_SECONDS)
            finally:
                self._waiting = False
            if result is not None:
                return result
        return None

    def unsubscribe(self) -> None:
        """Idempotent: ``InProcessWorker.abandon`` may stop the command channel's thread before RQ's teardown does."""
        if self.pubsub_thread is not None:
            super().unsubscribe()
            self.pubsub_thread = None


def work_burst(connection: Redis, names: tuple[str, ...] = queues.ALL) -> bool:
    """Run every job that is queued (or scheduled and due) now, after moving the webhook's waiting sync
    requests onto their queue (what the dispatcher does); True if any ran."""
    if queues.SYNC in names:
        dispatch.drain(connection)
    worker = ThreadWorker([queues.get_queue(name, connection) for name in names], connection=connection)
    return worker.work(burst=True, with_scheduler=True, logging_level="WARNING")


def enqueue_due_scheduled(connection: Redis, names: tuple[str, ...] = queues.ALL) -> None:
    """Move scheduled jobs whose time has come onto their queues (what ``rq worker --with-scheduler`` does)."""
    scheduler = RQScheduler([queues.get_queue(name, connection) for name in names], connection=connection,
                            logging_level="WARNING")
    scheduler.acquire_locks()
    if scheduler.acquired_locks:
        try:
            scheduler.enqueue_scheduled_jobs()
        finally:
            scheduler.release_locks()


class InProcessWorker:
    """The embedded worker thread: one registered, long-lived worker (operators see it) until stopped.

    ``stop()`` asks it to leave after its current job (seen within a second). Due scheduled jobs are
    moved by ``scheduled_forever`` in its own thread, since a busy worker never returns to do it.
    """

    def __init__(self, connection: Redis, stop: threading.Event):
        self.connection = connection
        self.stop_event = stop
        self.current: ThreadWorker | None = None

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.current = ThreadWorker([queues.get_queue(n, self.connection) for n in queues.ALL],
                                        connection=self.connection)
            try:
                self.current.work(burst=False, logging_level="WARNING")
            except Exception as exc:  # a Redis blip must not end the dev worker; RQ already recorded job failures
                if self.stop_event.is_set():
                    log.info("in-process worker stopped (%s while leaving)", type(exc).__name__)
                    return
                log.exception("in-process worker loop failed; retrying")
                self.stop_event.wait(1.0)

    def stop(self) -> None:
        self.stop_event.set()
        if self.current is not None:
            self.current._stop_requested = True  # RQ checks it between jobs

    def abandon(self) -> str | None:
        """Give up waiting for a job that is still running (its daemon thread ends with the process): stop the
        worker's command-channel thread now, so that stopping Redis next does not set it retrying on and on,
        and name the job for the log."""
        worker = self.current
        if worker is None:
            return None
        try:
            worker.unsubscribe()
            return worker.get_current_job_id()
        except redis.exceptions.RedisError:
            log.debug("Redis already gone while abandoning the worker", exc_info=True)
            return None


def scheduled_forever(connection: Redis, stop: threading.Event, every: float = 1.0) -> None:
    while not stop.wait(every):
        try:
            enqueue_due_scheduled(connection)
        except Exception:  # same: keep going through Redis blips
            log.exception("moving scheduled jobs failed; retrying")
