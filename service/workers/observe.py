"""What every calsync rq worker does around a job: log context (job, queue, user, subscription) and metrics;
and a teardown that cannot hang.

Mixed into the Procfile's ``Worker`` and the in-process ``ThreadWorker``; ``perform_job`` runs the job (in
the worker's process, or its thread), so that is where the job's samples are recorded.

It also names the running execution for the message claims the job takes (``service.channels.claims``).
"""

from __future__ import annotations

import inspect
import logging
import time

from service import logs, metrics
from service.channels import claims

log = logging.getLogger(__name__)

CONTEXT_ARGUMENTS = ("user_id", "subscription_id")


class ObservedJobs:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # RQ's own lines would name each job with its arguments (emails, rich notifications' validation
        # tokens): the job id and function are enough.
        self.log_job_description = False

    def perform_job(self, job, queue, execution) -> bool:
        started = time.monotonic()
        holder = execution.composite_key if execution is not None else None
        with claims.held_by(holder), logs.bound(job_id=job.id, queue=queue.name, **_known_ids(job)):
            ok = super().perform_job(job, queue, execution)
        function = (job.func_name or "").rsplit(".", 1)[-1] or "unknown"
        metrics.JOBS.labels(queue.name, function, "finished" if ok else "failed").inc()
        metrics.JOB_SECONDS.labels(queue.name).observe(time.monotonic() - started)
        return ok

    def unsubscribe(self) -> None:
        """Stop listening for rq's worker commands, waiting a second at most.

        rq stops its pubsub thread with redis-py's ``stop()``, which (redis 8.2) joins without a bound; a thread
        that has just seen the unsubscription waits up to rq's 60 s ``sleep_time`` for a new one, so a worker's
        teardown (every burst in the tests, a SIGTERM in production) could take a minute. The thread is a
        daemon: it closes its connection when that wait ends.
        """
        if self.pubsub_thread:
            self.pubsub.unsubscribe()
            self.pubsub_thread.stop(timeout=1)


def _known_ids(job) -> dict[str, str]:
    """The user and subscription ids among the job's arguments, by parameter name."""
    try:
        bound = inspect.signature(job.func).bind_partial(*job.args, **job.kwargs)
    except Exception:  # an unresolvable or odd job logs without ids; RQ reports its failure
        return {}
    return {name: value for name, value in bound.arguments.items()
            if name in CONTEXT_ARGUMENTS and isinstance(value, str)}
