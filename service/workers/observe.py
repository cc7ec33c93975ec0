"""What every calsync rq worker does around a job: log context (job, queue, user, subscription) and metrics.

Mixed into the Procfile's ``Worker`` and the in-process ``ThreadWorker``; ``perform_job`` runs the job (in
the worker's process, or its thread), so that is where the job's samples are recorded.
"""

from __future__ import annotations

import inspect
import logging
import time

from service import logs, metrics

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
        with logs.bound(job_id=job.id, queue=queue.name, **_known_ids(job)):
            ok = super().perform_job(job, queue, execution)
            function = (job.func_name or "").rsplit(".", 1)[-1] or "unknown"
            metrics.JOBS.labels(queue.name, function, "finished" if ok else "failed").inc()
            metrics.JOB_SECONDS.labels(queue.name).observe(time.monotonic() - started)
        return ok


def _known_ids(job) -> dict[str, str]:
    """The user and subscription ids among the job's arguments, by parameter name."""
    try:
        bound = inspect.signature(job.func).bind_partial(*job.args, **job.kwargs)
    except Exception:  # an unresolvable or odd job logs without ids; RQ reports its failure
        return {}
    return {name: value for name, value in bound.arguments.items()
            if name in CONTEXT_ARGUMENTS and isinstance(value, str)}
