"""RQ queue names, defined once. The order is the priority order a worker drains them in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis import Redis
from rq import Queue, Retry
from rq.job import Job

SYNC = "sync"                      # per-user delta syncs triggered by notifications: users wait on these
SUBSCRIPTIONS = "subscriptions"    # create / renew / reauthorize / recreate Graph subscriptions
PREP = "prep"                      # meeting prep mails: due minutes before a meeting, so ahead of digests
DIGEST = "digest"                  # daily digest emails
MAINTENANCE = "maintenance"        # sweeps: renewal, reconciliation, window roll
OUTBOUND = "outbound"              # webhooks to the rest of the product (service.outbound); last, never ahead of ours

ALL = (SYNC, SUBSCRIPTIONS, PREP, DIGEST, MAINTENANCE, OUTBOUND)

DEFAULT_RETRY = Retry(max=3, interval=[10, 60, 300])

# The RQ entry points (service/workers/jobs.py), named here so that domain code enqueues work without
# importing the adapters that sit above it. tests/foundation/test_queues.py resolves every one.
_JOBS = "service.workers.jobs."
SYNC_USER = _JOBS + "sync_user"
APPLY_RICH = _JOBS + "apply_rich"
RECORD_NOTIFICATION = _JOBS + "record_notification"
ENSURE_SUBSCRIPTION = _JOBS + "ensure_subscription"
HANDLE_LIFECYCLE = _JOBS + "handle_lifecycle"
RENEW_SUBSCRIPTION = _JOBS + "renew_subscription"
SWITCH_SUBSCRIPTION = _JOBS + "switch_subscription"
RETIRE_SUBSCRIPTION = _JOBS + "retire_subscription"
CHECK_MAILBOX = _JOBS + "check_mailbox"
RENEWAL_SWEEP = _JOBS + "renewal_sweep"
RECONCILE_SWEEP = _JOBS + "reconcile_sweep"
WINDOW_ROLL_SWEEP = _JOBS + "window_roll_sweep"
DIGEST_TICK = _JOBS + "digest_tick"
SEND_DIGEST = _JOBS + "send_digest"
PREP_TICK = _JOBS + "prep_tick"
SEND_PREP = _JOBS + "send_prep"
SEND_RECONNECT_MAIL = _JOBS + "send_reconnect_mail"
PURGE_USER_DATA = _JOBS + "purge_user_data"
RETENTION_SWEEP = _JOBS + "retention_sweep"
CALENDAR_POLL_SWEEP = _JOBS + "calendar_poll_sweep"
DELIVER_WEBHOOK = _JOBS + "deliver_webhook"
OUTBOX_SWEEP = _JOBS + "outbox_sweep"
PING = _JOBS + "ping"
# Tenant-wide connection (service.tenantwide)
TENANT_DIRECTORY_SYNC = _JOBS + "tenant_directory_sync"
TENANT_ENROL_MAILBOX = _JOBS + "tenant_enrol_mailbox"
TENANT_ENROL_MAILBOXES = _JOBS + "tenant_enrol_mailboxes"
TENANT_CONSENT_LOST = _JOBS + "tenant_consent_lost"
TENANT_OPT_OUT = _JOBS + "tenant_opt_out"
TENANT_DISCONNECT = _JOBS + "tenant_disconnect"
TENANT_PURGE_PEOPLE = _JOBS + "tenant_purge_people"
TENANT_RECHECK = _JOBS + "tenant_recheck"
TENANT_LEAVE = _JOBS + "tenant_leave"
TENANT_LEAVE_PEOPLE = _JOBS + "tenant_leave_people"
TENANT_SWEEP = _JOBS + "tenant_sweep"
WORKING_HOURS_SWEEP = _JOBS + "working_hours_sweep"
REFRESH_WORKING_HOURS = _JOBS + "refresh_working_hours"
WEEKS_SWEEP = _JOBS + "weeks_sweep"
MEASURE_WEEKS = _JOBS + "measure_weeks"
JOB_NAMES = (SYNC_USER, APPLY_RICH, RECORD_NOTIFICATION, ENSURE_SUBSCRIPTION, HANDLE_LIFECYCLE, RENEW_SUBSCRIPTION,
             RENEWAL_SWEEP, RECONCILE_SWEEP, WINDOW_ROLL_SWEEP, DIGEST_TICK, SEND_DIGEST, PREP_TICK, SEND_PREP,
             SEND_RECONNECT_MAIL, PURGE_USER_DATA, RETENTION_SWEEP, CALENDAR_POLL_SWEEP, DELIVER_WEBHOOK,
             OUTBOX_SWEEP, PING, SWITCH_SUBSCRIPTION, RETIRE_SUBSCRIPTION, CHECK_MAILBOX, TENANT_DIRECTORY_SYNC,
             TENANT_ENROL_MAILBOX, TENANT_ENROL_MAILBOXES, TENANT_CONSENT_LOST, TENANT_OPT_OUT, TENANT_DISCONNECT,
             TENANT_PURGE_PEOPLE, TENANT_RECHECK, TENANT_LEAVE, TENANT_LEAVE_PEOPLE, TENANT_SWEEP,
             WORKING_HOURS_SWEEP, REFRESH_WORKING_HOURS, WEEKS_SWEEP, MEASURE_WEEKS)


def get_queue(name: str, connection: Redis) -> Queue:
    if name not in ALL:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=connection)


def enqueue(
    connection: Redis,
    queue: str,
    func: str,
    *args,
    retry: Retry | None = DEFAULT_RETRY,
    job_timeout: int = 300,
    **options,
) -> Job:
    """Enqueue ``func(*args)`` with retries; arguments must be JSON-able primitives."""
    return get_queue(queue, connection).enqueue(
        func, *args, retry=retry, job_timeout=job_timeout, result_ttl=3600, failure_ttl=7 * 86400, **options
    )


def enqueue_chunks(connection: Redis, queue: str, func: str, items: list, size: int, *before,
                   job_timeout: int = 300) -> int:
    """Enqueue ``func(*before, chunk)`` for each chunk of ``size`` items, with retries, in one Redis round trip
    (RQ's own cost, about 100 commands a job, is paid once per chunk). Returns how many jobs."""
    target = get_queue(queue, connection)
    jobs = [target.prepare_data(func, (*before, items[start:start + size]), timeout=job_timeout, result_ttl=3600,
                                failure_ttl=7 * 86400, retry=DEFAULT_RETRY)
            for start in range(0, len(items), size)]
    if jobs:
        with connection.pipeline() as pipe:
            target.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    return len(jobs)


def not_before(at: datetime) -> datetime:
    """``at`` rounded up to a whole second, for ``enqueue_at``: RQ's ScheduledJobRegistry scores a job by whole
    seconds and truncates, so a job scheduled at a Retry-After's end could run up to a second before it."""
    whole = at.replace(microsecond=0)
    return whole if whole == at else whole + timedelta(seconds=1)


def in_seconds(delay: float) -> datetime:
    """The instant ``delay`` seconds from now, never before it once RQ has scheduled it (``not_before``)."""
    return not_before(datetime.now(UTC) + timedelta(seconds=delay))
