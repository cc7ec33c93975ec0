"""The rq worker class the Procfile runs: ``rq worker -w service.workers.worker.Worker``.

It reads the settings when it starts (a bad one stops it with one line and exit code 2, as every calsync
process does) and installs the process's Runtime for the jobs it runs. Each job runs with its ids in the
log context and its metrics recorded (``service.workers.observe``).

Jobs run in the worker process itself (RQ's ``SimpleWorker``), not in a work horse forked per job, so the
Runtime's MongoDB pool, Redis connection, HTTPS keep-alive connections to Graph and MSAL's discovery cache
live across jobs. A sync job is short and waits on I/O (bench P3: 33 ms median); forking for each one
doubled it (66 ms: the fork, then new MongoDB, Redis and TLS connections and MSAL's discovery, every
time), and at 200 changes/s over 50 users freshness p99 went from 2.5 s forking to 1.1 s. What the fork
gave, we keep otherwise: a job's time limit is RQ's SIGALRM in the main thread, as in a horse; and, as a
forking worker's main loop does while its horse runs, a thread renews the heartbeats of the worker and
of the running job every ``HEARTBEAT_SECONDS`` with a short TTL. RQ's SimpleWorker sets one
heartbeat of the job's whole timeout plus a minute instead (360 s for a sync), so a worker SIGKILLed
mid-job left its job looking alive for six minutes before RQ retried it; now its heartbeat lapses
``HEARTBEAT_TTL`` (8 s) after the worker's last beat, and every worker looks for lapsed jobs every
``RECOVERY_SECONDS`` (idle, or between jobs: ``Worker.recover``, one pipelined read when nothing lapsed) and
retries such a job under the same id at once, which takes its user's lock back at once, and the claim its dead
execution held on a message (``service.channels.claims``): within about 10 s of the kill, where it was 20-30 s.
A live job is never taken over while its worker's process runs: the beat is a thread of its own, independent of
how long the job takes (a job 20 TTLs long stays in its worker's hands: tests/workers/test_worker_heartbeats.py);
only a process stopped or starved of the CPU for 7 s in a row would look dead (its job would then run twice).

A job can also be lost between RQ's dequeue and its execution being recorded: a worker on one queue moves the
job to the queue's intermediate list (BLMOVE), then records its execution in the StartedJobRegistry. Killed in
between (bench P12 hit this one run in three: its kill lands just after a job ends, when the worker takes its
next one), the job is in neither the queue nor the registry. RQ's maintenance finds it, but only after seeing it
twice a minute apart, and idle workers ran maintenance only when their 405 s dequeue wait ended: the message
waited about seven minutes. Here idle workers wait at most ``RECOVERY_SECONDS`` per dequeue, so the recovery
runs that often busy or idle (RQ's maintenance every ``MAINTENANCE_SECONDS``), and a job seen stuck by two passes
``STUCK_SECONDS`` apart is put back at the head of its queue (it never ran: no retry is spent on it).

That intermediate list is RQ's only for a worker on one queue. On several (the Procfile's six), RQ 3.0 dequeues
with BLPOP, which takes the job off the queue into nothing: a worker killed between that pop and recording the
execution lost the job without a trace. Here a worker on several queues dequeues as on one: a Lua script
LMOVEs the first job of the first non-empty queue, in priority order, into that queue's intermediate list in one
atomic step; when all are empty it blocks with BLMOVE on the first queue (``sync``) for ``POLL_SECONDS`` at a
time and tries them all again. Redis has no blocking move from several lists, so a job on a later queue waits at
most ``POLL_SECONDS`` for an idle worker. The job leaves the intermediate list when its execution is recorded
(``prepare_job_execution``, in the same pipeline), and ``requeue_stuck`` covers every queue's list.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rq import SimpleWorker, worker_registration
from rq.exceptions import DequeueTimeout
from rq.job import JobStatus
from rq.registry import clean_registries
from rq.utils import as_text, current_timestamp, get_version, now
from rq.worker import BaseWorker

from service.config import ConfigError, Settings
from service.logs import configure
from service.runtime import Runtime, install
from service.workers.observe import ObservedJobs

# RQ moves scheduled jobs (retries, throttled and re-checked syncs) onto their queues from one worker, the
# holder of its scheduler lock. When that worker is SIGKILLed its lock lapses after about a minute, but the
# others only try to take it over in their maintenance pass, every 10 minutes by default: until then no
# retry runs anywhere. A pass every 10 s bounds that to about 70 s (the pass is one worker's at a time, a few
# Redis reads per queue). It also bounds an idle worker's dequeue wait, so that idle workers run it too.
MAINTENANCE_SECONDS = 10
# A running job's heartbeat: renewed every HEARTBEAT_SECONDS by a thread of the worker (``_heartbeats``), it
# lapses HEARTBEAT_TTL after the last one. A live worker would have to miss seven beats in a row (its process
# stopped or starved for 7 s) to look dead, and then its job would run twice (a message sent twice): 5 s (a
# 4 s margin) recovered 3 s sooner, but a loaded host or a long GC pause comes closer to it than we want for
# other people's messages. A SIGKILLed worker's job is found abandoned and retried within HEARTBEAT_TTL +
# RECOVERY_SECONDS + 1 (RQ's registry scores are whole seconds): about 10 s, where it was 20 s plus a
# maintenance pass of up to 10 s. The beat is one pipelined round trip a second per busy worker.
HEARTBEAT_SECONDS = 1
HEARTBEAT_TTL = 8
# How often each worker looks for a dead worker's jobs (``Worker.recover``): one pipelined read of every queue's
# StartedJobRegistry (lapsed entries) and intermediate list, idle or between jobs; the locks and the writes only
# when it finds something. It also bounds an idle worker's dequeue wait, so that idle workers look too.
RECOVERY_SECONDS = 1
# A job in a queue's intermediate list but in no StartedJobRegistry this long was taken by a worker that died
# before recording it (a live worker records it milliseconds after taking it): the heartbeat's lapse, as for a
# job that did start.
STUCK_SECONDS = HEARTBEAT_TTL
# The recovery's own lock per queue: short, so that a worker killed while holding it (it is held for a few
# milliseconds) holds up the others' recovery for this long at most. RQ's maintenance lock lasts 899 s.
RECOVERY_LOCK_SECONDS = 10
# A worker on several queues, all empty, blocks on its first queue this long at a time, then looks at them all:
# the most a job on a later queue waits for an idle worker (Redis cannot block-move from several lists).
POLL_SECONDS = 0.2

# The first job of the first non-empty queue (KEYS[1..n], in priority order) moved to that queue's intermediate
# list (KEYS[n+1..2n]) in one atomic step: {queue key, job id}, or nil when every queue is empty.
_MOVE_FIRST = """
local n = #KEYS / 2
for i = 1, n do
    local job_id = redis.call('LMOVE', KEYS[i], KEYS[n + i], 'LEFT', 'RIGHT')
    if job_id then return {KEYS[i], job_id} end
end
return nil
"""

log = logging.getLogger(__name__)


class Worker(ObservedJobs, SimpleWorker):
    def __init__(self, *args, **kwargs):
        kwargs["maintenance_interval"] = min(kwargs.get("maintenance_interval") or MAINTENANCE_SECONDS,
                                             MAINTENANCE_SECONDS)
        kwargs["job_monitoring_interval"] = min(kwargs.get("job_monitoring_interval") or HEARTBEAT_SECONDS,
                                                HEARTBEAT_SECONDS)
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            print(f"calsync: configuration error: {exc}", file=sys.stderr)  # noqa: T201
            raise SystemExit(2) from None
        configure(settings)
        install(Runtime(settings))
        super().__init__(*args, **kwargs)
        # After RQ checked the queues against the configured class: only its dequeue_any changes.
        self.queue_class = moving_queue_class(self.queue_class)

    def prepare_job_execution(self, job, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's, taking the job out of its queue's intermediate list on any number of queues (RQ does it for one
        queue only: on several its BLPOP used none), in the pipeline that records the execution."""
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def perform_job(self, job, queue, execution) -> bool:
        with _heartbeats(self, job, execution):
            return super().perform_job(job, queue, execution)

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        """Short: ``_heartbeats`` renews it (RQ's forking worker adds 60 s to the interval; that is the minute a
        killed worker's job and its message claims stayed held)."""
        left = job.timeout - working_time if job.timeout and job.timeout > 0 else HEARTBEAT_TTL
        return int(max(1, min(left, self.job_monitoring_interval))) + HEARTBEAT_TTL - HEARTBEAT_SECONDS

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker's wait for a job, so that it looks for a dead worker's jobs (``RECOVERY_SECONDS``) and runs
        its maintenance (``MAINTENANCE_SECONDS``) meanwhile."""
        return max(1, min(BaseWorker.dequeue_timeout.fget(self), int(self.maintenance_interval), RECOVERY_SECONDS))

    @property
    def connection_timeout(self) -> int:
        """The worker's Redis socket timeout, as before the shorter dequeue wait (RQ's is that wait plus 10 s): the
        job's connection is the worker's, and a job's blocking call may wait longer than a second."""
        return max(1, min(BaseWorker.dequeue_timeout.fget(self), int(self.maintenance_interval))) + 10

    @property
    def should_run_maintenance_tasks(self) -> bool:
        """RQ's maintenance when due (``MAINTENANCE_SECONDS``), or the lighter recovery (``RECOVERY_SECONDS``)."""
        return BaseWorker.should_run_maintenance_tasks.fget(self) or self._recovery_due()

    def _recovery_due(self) -> bool:
        return time.monotonic() - getattr(self, "_recovered_at", float("-inf")) >= RECOVERY_SECONDS

    def run_maintenance_tasks(self) -> None:
        if BaseWorker.should_run_maintenance_tasks.fget(self):
            super().run_maintenance_tasks()          # clean_registries below: the recovery, then RQ's cleanup
        else:
            self.recover()
        self._recovered_at = time.monotonic()

    def recover(self) -> dict[str, list[str]]:
        """A dead worker's jobs on this worker's queues, queued again at their head (``retry_abandoned``,
        ``requeue_stuck``); returns their ids by queue. One pipelined read of every queue when there is nothing to
        recover, which is nearly always."""
        queues = list(self.queues)
        with self.connection.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.zrangebyscore(queue.started_job_registry.key, 0, current_timestamp(), start=0, num=1)
                pipe.llen(queue.intermediate_queue_key)
            found = pipe.execute()
        recovered = {}
        for n, queue in enumerate(queues):
            lapsed, taken = found[2 * n], found[2 * n + 1]
            if lapsed or taken:
                ids = recover_queue(queue)
                if ids:
                    recovered[queue.name] = ids
        return recovered

    def clean_registries(self) -> None:
        """RQ's registry maintenance (``BaseWorker.clean_registries``), but a dead worker's jobs go back at the head
        of their queue at once (``recover_queue``) first: an abandoned one (its heartbeat lapsed) spends a retry
        without waiting its retry interval, which would wait for RQ's scheduler, whose lock the dead worker may
        have held for another minute; one stuck in a queue's intermediate list after ``STUCK_SECONDS`` rather than
        failed after one. RQ's cleanup of the StartedJobRegistry runs under the recovery's lock too, so that the
        two never both act on one abandoned job."""
        for queue in self.queues:
            if queue.acquire_maintenance_lock():
                try:
                    with _recovery_lock(queue) as locked:
                        if locked:
                            _recover_locked(queue)
                            clean_registries(queue, self._exc_handlers)
                    worker_registration.clean_worker_registry(queue)
                finally:
                    queue.release_maintenance_lock()
        self.last_cleaned_at = now()


@contextmanager
def _recovery_lock(queue) -> Iterator[bool]:
    """The queue's recovery lock (``RECOVERY_LOCK_SECONDS``), not waited for: True if this worker holds it."""
    lock = queue.connection.lock(f"{queue.registry_cleaning_key}:recovery", timeout=RECOVERY_LOCK_SECONDS,
                                 blocking=False)
    if not lock.acquire():
        yield False
        return
    try:
        yield True
    finally:
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - it lapsed (a pass longer than its timeout): nothing to release
            log.warning("worker: the recovery lock of queue %s lapsed before its pass ended", queue.name)


def recover_queue(queue) -> list[str]:
    """``retry_abandoned`` and ``requeue_stuck`` on ``queue`` under its recovery lock (skipped when another worker
    holds it: that one is doing it); the ids queued again."""
    with _recovery_lock(queue) as locked:
        return _recover_locked(queue) if locked else []


def _recover_locked(queue) -> list[str]:
    return retry_abandoned(queue) + requeue_stuck(queue)


def moving_queue_class(base: type) -> type:
    """``base`` (RQ's Queue or a subclass) whose ``dequeue_any`` moves the job into its queue's intermediate list
    however many queues it listens on (``dequeue_moving``)."""
    if getattr(base, "dequeues_by_moving", False):
        return base

    class MovingQueue(base):
        dequeues_by_moving = True

        @classmethod
        def dequeue_any(cls, queues, timeout, connection, job_class=None, serializer=None,
                        death_penalty_class=None):
            queues = list(queues)
            if len(queues) == 1 or get_version(connection) < (6, 2, 0):   # RQ's own BLMOVE path; no LMOVE
                return super().dequeue_any(queues, timeout, connection, job_class=job_class, serializer=serializer,
                                           death_penalty_class=death_penalty_class)
            while True:
                moved = dequeue_moving(connection, queues, timeout)
                if moved is None:
                    return None
                queue_key, job_id = moved
                found = cls._fetch_dequeued_job(connection, queue_key, job_id, job_class=job_class,
                                                serializer=serializer, death_penalty_class=death_penalty_class)
                if found is not None:
                    return found
                # The job's hash is gone (it expired or was deleted): its id is dropped from the intermediate list
                # by requeue_stuck; take the next one.

    MovingQueue.__name__ = MovingQueue.__qualname__ = f"Moving{base.__name__}"
    return MovingQueue


def dequeue_moving(connection, queues: list, timeout: float | None) -> tuple[str, str] | None:
    """(queue key, job id) of the job moved off the first non-empty of ``queues`` into that queue's intermediate
    list; None at once if all are empty and ``timeout`` is None, else RQ's ``DequeueTimeout`` after ``timeout``
    seconds of all of them empty."""
    keys = [q.key for q in queues] + [q.intermediate_queue_key for q in queues]
    move_first = connection.register_script(_MOVE_FIRST)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        found = move_first(keys=keys)
        if found:
            return as_text(found[0]), as_text(found[1])
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise DequeueTimeout(timeout, keys[: len(queues)])
        # Block on the first queue a short while: a job there is taken at once, one elsewhere at the next look.
        job_id = connection.blmove(keys[0], keys[len(queues)], max(0.01, min(POLL_SECONDS, left)))
        if job_id is not None:
            return as_text(keys[0]), as_text(job_id)


def retry_abandoned(queue) -> list[str]:
    """Jobs whose execution's heartbeat lapsed (their worker died mid-job) and that have retries left, queued
    again at the head of ``queue`` now; returns their ids. The rest (no retry left, or not started) are left to
    RQ's cleanup, which fails them as abandoned."""
    registry = queue.started_job_registry
    retried = []
    for entry in queue.connection.zrangebyscore(registry.key, 0, current_timestamp()):
        job = queue.fetch_job(registry.parse_job_id(entry))
        if job is None or job.get_status() != JobStatus.STARTED or not job.retries_left:
            continue
        job.retries_left -= 1
        with queue.connection.pipeline() as pipe:
            pipe.zrem(registry.key, entry)
            queue._enqueue_job(job, pipeline=pipe, at_front=True)   # noqa: SLF001 - RQ's Job.retry without a wait
            pipe.execute()
        log.warning("worker: job %s was abandoned by a worker that died; queued again (%d retries left)",
                    job.id, job.retries_left)
        retried.append(job.id)
    return retried


def requeue_stuck(queue) -> list[str]:
    """Jobs a dead worker took off ``queue`` (its intermediate list) before recording their execution, back at the
    head of the queue; returns their ids. A job is stuck once two passes ``STUCK_SECONDS`` apart saw it there and
    in no StartedJobRegistry (the first pass notes when, in RQ's own first-seen key)."""
    intermediate = queue.intermediate_queue
    requeued = []
    for job_id in intermediate.get_job_ids():
        if job_id in queue.started_job_registry:
            continue
        job = queue.fetch_job(job_id)
        if job is None:
            intermediate.remove(job_id)
            continue
        # RQ's own first-seen key (set_first_seen) lasts a day; a pass a second sees many jobs in the milliseconds
        # between a live worker's dequeue and its record, so ours lapses once it can no longer matter.
        if queue.connection.set(intermediate.get_first_seen_key(job_id), now().timestamp(), nx=True,
                                ex=STUCK_SECONDS * 4):
            continue
        first = intermediate.get_first_seen(job_id)
        if first is None or (now() - first).total_seconds() < STUCK_SECONDS:
            continue
        with queue.connection.pipeline() as pipe:
            pipe.lrem(intermediate.key, 1, job_id)
            pipe.delete(intermediate.get_first_seen_key(job_id))
            queue._enqueue_job(job, pipeline=pipe, at_front=True)   # noqa: SLF001 - enqueue_job cannot pipeline
            pipe.execute()
        log.warning("worker: job %s was taken off queue %s by a worker that died before running it; queued again",
                    job_id, queue.name)
        requeued.append(job_id)
    return requeued


@contextmanager
def _heartbeats(worker: BaseWorker, job, execution) -> Iterator[None]:
    """Renew the worker's, the execution's and the job's heartbeats while the job runs in this thread."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(worker.job_monitoring_interval):
            try:
                worker.maintain_heartbeats(job, execution)
            except Exception as exc:  # noqa: BLE001 - Redis away: the next beat tries again, the job goes on
                log.warning("worker: could not renew the heartbeat of job %s: %s", job.id, type(exc).__name__)

    thread = threading.Thread(target=beat, name=f"rq-heartbeat-{job.id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
