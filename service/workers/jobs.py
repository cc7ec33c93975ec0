"""Every RQ entry point: primitive arguments in, the process's Runtime wired into one domain call, the
outcome out as a string (RQ's result). Exceptions go to RQ, for its retries and failed registry.

Domain code enqueues these by the names in ``service.queues``, so nothing below imports this
module; it is the top of the dependency graph beside the web app.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from rq import get_current_job

from service import outbox, queues, runtime
from service.digest import plan as digest_plan
from service.digest import prep
from service.digest import send as digest_send
from service.digest import tick as digests
from service.identity.msal_app import MAILBOX_SETTINGS
from service.identity.tokens import ScopeNotGranted
from service.insights import outlook_hours, timeside
from service.outbound import delivery as outbound_delivery
from service.recovery import witness
from service.store import preps as preps_store
from service.store import users as users_store
from service.store import utcnow
from service.subscriptions import sweep
from service.sync import mailboxes, runner, sweeps
from service.sync import requests as sync_requests
from service.tenantwide import enrolment as tenant_wide
from service.webhooks import apply, rich

log = logging.getLogger(__name__)


def ping(value: str) -> str:
    """A no-op job used by health checks and the Procfile worker test."""
    runtime.current().redis.set(f"calsync:ping:{value}", "pong", ex=300)
    return value


# ------------------------------------------------------------------ sync

def sync_user(user_id: str) -> str:
    """Bring one user's stored events in line with Graph."""
    rt = runtime.current()
    job = get_current_job()
    retried = job is not None and job.retries_left is not None and job.retries_left < sync_requests.SYNC_RETRY.max
    try:
        report = runner.sync_user(rt.db, rt.redis, rt.settings, rt.graph_for, user_id,
                                  job.id if job else uuid.uuid4().hex, after_failure=retried)
    except runner.UserGone:
        rt.connections.user_gone(user_id)
        return "disconnected"
    if report.time_zone:
        digest_plan.reschedule(rt.db, user_id, rt.settings.digest_default_time)
    return str(report.outcome)


def reconcile_sweep() -> int:
    """Users silent too long are synced; users who cannot sync get their (daily) mailbox check when due."""
    rt = runtime.current()
    return sweeps.reconcile(rt.db, rt.redis, rt.settings, utcnow()) + mailboxes.queue_checks(rt.db, rt.redis,
                                                                                               utcnow())


def check_mailbox(user_id: str) -> str:
    """Whether the mailbox of a user who cannot sync can be read again (then they sync as after a connect)."""
    rt = runtime.current()
    return mailboxes.check(rt.db, rt.redis, rt.graph_for, user_id, utcnow())


def window_roll_sweep() -> int:
    rt = runtime.current()
    return sweeps.window_roll(rt.db, rt.redis, rt.settings, utcnow())


def calendar_poll_sweep() -> int:
    """Calendars the mailbox subscription may not cover (shared copies, secondary ones) are read anyway."""
    rt = runtime.current()
    return sweeps.polled_calendars(rt.db, rt.redis, utcnow())


def retention_sweep() -> int:
    """Daily: forget events that ended more than CALSYNC_RETENTION_DAYS ago."""
    rt = runtime.current()
    return sweeps.retention(rt.db, rt.settings, utcnow())


def working_hours_sweep() -> int:
    """Daily, when the operator turned Outlook's working hours on: queue a read for each person."""
    rt = runtime.current()
    if not rt.settings.outlook_working_hours:
        return 0
    return outlook_hours.sweep(rt.db, lambda user_id: queues.enqueue(
        rt.redis, queues.MAINTENANCE, queues.REFRESH_WORKING_HOURS, user_id))


def weeks_sweep() -> int:
    """Hourly: queue the measuring of this ISO week and the next for every connected person, 500 a job; each
    measures only the weeks whose stored summary is missing or stale (``timeside.weeks_for``), so the digest's
    Monday look-ahead, the week page and the API serve an organisation's weeks from summaries (bench P9)."""
    rt = runtime.current()
    ids = users_store.connected_ids(rt.db)
    batches = [ids[at:at + timeside.BATCH] for at in range(0, len(ids), timeside.BATCH)]
    now = utcnow().isoformat()      # one instant for the sweep: every batch measures the same two weeks
    for batch in batches:
        queues.enqueue(rt.redis, queues.MAINTENANCE, queues.MEASURE_WEEKS, batch, now)
    return len(batches)


def measure_weeks(user_ids: list[str], now_iso: str) -> int:
    """This ISO week and the next (of ``now_iso``, in UTC: a day either side of every zone's) for these people;
    returns how many weeks had to be measured from events."""
    rt = runtime.current()
    return timeside.keep_weeks(rt.db, list(users_store.by_ids(rt.db, user_ids).values()),
                               datetime.fromisoformat(now_iso))


def refresh_working_hours(user_id: str) -> str:
    rt = runtime.current()
    if not rt.settings.outlook_working_hours:
        return "off"
    try:
        return outlook_hours.refresh(rt.db, rt.tokens.graph_with(user_id, (MAILBOX_SETTINGS,)), user_id)
    except ScopeNotGranted:
        return "not-consented"


# ------------------------------------------------------------------ behind the webhook

def apply_rich(user_id: str, items: list[dict], tokens: list[str]) -> str:
    rt = runtime.current()
    keys = rt.signing_keys.at(rich.jwks_url(rt.settings))
    return apply.apply_rich(rt.db, rt.redis, rt.settings, keys, user_id, items, tokens)


def record_notification(user_id: str, subscription_id: str, at_iso: str) -> None:
    apply.record_notification(runtime.current().db, user_id, subscription_id, datetime.fromisoformat(at_iso))


# ------------------------------------------------------------------ subscriptions

def ensure_subscription(user_id: str) -> str | None:
    """Create (or replace) the user's subscription; its id, or None when the user cannot have one."""
    subscription = runtime.current().subscriptions.ensure(user_id)
    return subscription.id if subscription else None


def handle_lifecycle(subscription_id: str, lifecycle_event: str) -> str:
    return str(runtime.current().subscriptions.handle_lifecycle(subscription_id, lifecycle_event))


def renew_subscription(subscription_id: str) -> str:
    return str(runtime.current().subscriptions.renew(subscription_id))


def switch_subscription(subscription_id: str) -> str:
    """Replace a subscription marked for recreation (immutable ids) without a gap in notifications."""
    return str(runtime.current().subscriptions.switch(subscription_id))


def retire_subscription(subscription_id: str, user_id: str) -> bool:
    """Delete a subscription its successor replaced, once the overlap is over."""
    return runtime.current().subscriptions.retire(subscription_id, user_id)


def renewal_sweep(now_iso: str | None = None) -> dict:
    rt = runtime.current()
    now = datetime.fromisoformat(now_iso) if now_iso else utcnow()
    return sweep.renewal_sweep(rt.db, rt.redis, rt.settings, now)


# ------------------------------------------------------------------ connections and digests

def purge_user_data(user_id: str) -> dict:
    """Finish deleting a user's data once the sync that held their lock has stopped."""
    return runtime.current().connections.purge(user_id)


def send_reconnect_mail(user_id: str) -> bool:
    rt = runtime.current()
    return rt.connections.send_reconnect_mail(user_id, rt=rt)


def digest_tick() -> int:
    """Scheduler entry point (every minute)."""
    rt = runtime.current()
    return digests.tick(rt.db, rt.redis, rt.settings, utcnow())


def send_digest(user_id: str, local_date: str) -> str:
    """Send one user's digest for one local date; safe to retry or run twice."""
    rt = runtime.current()
    outcome = digest_send.deliver(rt.db, rt.settings, rt.mailer, user_id, local_date, redis=rt.redis, rt=rt)
    if outcome == "sent":
        witness.digest_sent(rt.redis, user_id, local_date)   # MongoDB restored from a backup still knows it
    return outcome


def prep_tick() -> int:
    """Scheduler entry point (every minute): the meeting preps due now become send_prep jobs."""
    rt = runtime.current()
    return prep.tick(rt.db, rt.redis, utcnow())


def send_prep(user_id: str, meeting: str, start_iso: str) -> str:
    """Send one meeting's prep mail; safe to retry or run twice."""
    rt = runtime.current()
    outcome = prep.deliver(rt.db, rt.settings, rt.mailer, user_id, meeting, start_iso, notify=_prep_due(rt), rt=rt)
    if outcome == "sent":
        start = datetime.fromisoformat(start_iso)
        witness.prep_sent(rt.redis, preps_store.record_id(user_id, meeting, start), user_id, meeting, start)
    return outcome


def _prep_due(rt):
    """prep.deliver's ``notify``: its ``meeting.prep_due`` payload becomes the outbound event."""
    def notify(event: dict) -> None:
        outbox.prep_due(rt.db, rt.redis, event["user_id"], event["event_id"], datetime.fromisoformat(event["start"]),
                        event["attendees"], meeting_key=event["meeting_key"], channels=event.get("channels"))
    return notify


# ------------------------------------------------------------------ outbound webhooks

def deliver_webhook(delivery_id: str) -> str:
    """One attempt at one outbound delivery; its retries are scheduled by the attempt itself, not RQ's."""
    rt = runtime.current()
    return outbound_delivery.attempt(rt.db, rt.redis, rt.settings, rt.ssl_context, delivery_id)


def outbox_sweep() -> dict:
    """Scheduler entry point (every minute): late deliveries queued again, endpoints failing 3 days paused."""
    rt = runtime.current()
    return outbound_delivery.sweep(rt.db, rt.redis)


# ------------------------------------------------------------------ tenant-wide connection

def tenant_directory_sync(tenant_id: str) -> str:
    """A users/delta round for a tenant-wide tenant, then enrolment (joiners probed, leavers let go)."""
    return str(runtime.current().tenant_wide.sync_directory(tenant_id))


def tenant_enrol_mailbox(user_id: str, what: str = "new") -> str:
    """Probe one enrolled mailbox with the app token; in scope → its subscription and first sync."""
    return runtime.current().tenant_wide.enrol_mailbox(user_id, what)


def tenant_enrol_mailboxes(enrolled: list[list[str]]) -> str:
    """Up to 20 enrolled mailboxes ([user id, what] pairs): probes in one $batch, then each one's subscription and
    first sync; a mailbox that fails is queued again alone (``tenant_enrol_mailbox``), the others go on."""
    outcomes = runtime.current().tenant_wide.enrol_mailboxes(enrolled)
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return str(dict(sorted(counts.items())))


def tenant_consent_lost(tenant_id: str) -> str:
    """The tenant's consent is gone: one mail to its admin."""
    return "mailed" if runtime.current().tenant_wide.consent_lost_mail(tenant_id) else "not mailed"


def tenant_opt_out(user_id: str) -> str:
    return str(runtime.current().tenant_wide.opt_out(user_id))


def tenant_disconnect(tenant_id: str) -> int:
    """A disconnecting tenant: the purge of whoever it still has, queued in jobs (or the disconnection ended)."""
    return runtime.current().tenant_wide.continue_disconnect(tenant_id)


def tenant_recheck(tenant_id: str) -> int:
    """After a scope or access-policy change: every tenant-wide mailbox probed again, in jobs of 20."""
    return runtime.current().tenant_wide.recheck(tenant_id)


def tenant_leave(tenant_id: str) -> int:
    """A tenant switched to per-user: the leave of whoever it still reads with the app token, queued in jobs."""
    return runtime.current().tenant_wide.continue_leaving(tenant_id)


def tenant_leave_people(tenant_id: str, user_ids: list[str]) -> str:
    """Some people of a tenant switched to per-user: back to their own grant, or disconnected (data kept)."""
    return str(runtime.current().tenant_wide.leave_people(tenant_id, user_ids))


def tenant_purge_people(tenant_id: str, user_ids: list[str]) -> str:
    """Some people of a disconnecting tenant: subscription deleted at Graph, data purged."""
    return str(runtime.current().tenant_wide.purge_people(tenant_id, user_ids))


def tenant_sweep() -> int:
    """Periodic: a directory round for every tenant-wide tenant."""
    rt = runtime.current()
    return tenant_wide.sweep(rt.db, rt.redis)
