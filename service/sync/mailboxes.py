"""Users whose mailbox calsync cannot read: a status with its reason, one check a day, recovery on its own.

Guests, accounts without an Exchange Online licence, on-premises or soft-deleted mailboxes answer Graph with
``MailboxNotEnabledForRESTAPI`` (Microsoft KB 4462988: HTTP 404, "REST API is not yet supported for this
mailbox"; also ``MailboxNotSupportedForRESTAPI``); a mailbox out of an application access policy's scope or a
disabled account answers 403 ``ErrorAccessDenied``; some valid users answer 404 ``ErrorInvalidUser``.
Retrying those helps nobody: the user moves from ``connected`` to ``cannot_sync`` with the reason
(``connection.status_changed`` says so), nothing syncs, renews or repairs for them, and once a day a job asks
Graph for one calendar; the day it answers, the user is connected again and syncing starts as after a connect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo.database import Database
from redis import Redis

from service import outbox, queues
from service.graph import GraphClient, GraphError, mailbox_unavailable
from service.identity.tokens import ReconnectRequired, TokenUnavailable
from service.store import users
from service.store.records import ConnectionStatus
from service.sync.requests import request_sync

log = logging.getLogger(__name__)

CHECK_EVERY = timedelta(days=1)
RETRY_SOON = timedelta(hours=1)      # the check itself failed for another reason (throttled, Graph down)
REASONS = {
    "no_exchange_mailbox": "no Exchange Online mailbox",
    "mailbox_not_found": "Microsoft 365 does not find this mailbox",
    "mailbox_access_denied": "access to the mailbox is denied (an administrator's policy or a disabled account)",
}
PROBE = "users/{user_id}/calendars?$top=1&$select=id"
MAILBOX_AVAILABLE = "mailbox_available"


class MailboxUnavailable(Exception):  # noqa: N818 - a state, not a bug
    """Graph says calsync cannot read this user's mailbox; ``reason`` is a key of ``REASONS``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def describe(reason: str | None) -> str | None:
    """What a user or operator reads for a cannot_sync reason: "cannot sync: no Exchange Online mailbox"."""
    return f"cannot sync: {REASONS[reason]}" if reason in REASONS else None


def raise_if_unavailable(exc: GraphError, *, mailbox_wide: bool) -> None:
    reason = mailbox_unavailable(exc, mailbox_wide=mailbox_wide)
    if reason is not None:
        raise MailboxUnavailable(reason) from exc


def mark(db: Database, redis: Redis, user_id: str, reason: str, now: datetime) -> bool:
    """Record that the user's mailbox cannot be read (checked again a day later); True for the change from
    connected, which is announced once."""
    previous = users.mark_cannot_sync(db, user_id, reason, now + CHECK_EVERY, now)
    if previous != ConnectionStatus.CONNECTED:
        return False
    log.warning("user %s cannot sync: %s; checked again daily", user_id, REASONS.get(reason, reason))
    outbox.connection_status_changed(db, redis, user_id, ConnectionStatus.CANNOT_SYNC, reason,
                                     ConnectionStatus.CONNECTED, now)
    return True


def queue_checks(db: Database, redis: Redis, now: datetime) -> int:
    """One ``check_mailbox`` job for each user whose daily check is due (the reconcile sweep's companion)."""
    due = users.cannot_sync_due(db, now)
    for user_id in due:
        users.set_next_mailbox_check(db, user_id, now + RETRY_SOON)   # claimed: the job sets the next one
        queues.enqueue(redis, queues.MAINTENANCE, queues.CHECK_MAILBOX, user_id, retry=None)
    return len(due)


def check(db: Database, redis: Redis, graph_for: Callable[[str], GraphClient], user_id: str, now: datetime) -> str:
    """Ask Graph for one of the user's calendars: readable again → connected, subscription and sync as after a
    connect; still unavailable → again in a day; anything else → again in an hour."""
    user = users.get(db, user_id)
    if user is None or user.connection.status != ConnectionStatus.CANNOT_SYNC:
        return "skipped"
    try:
        graph_for(user_id).get_json(PROBE.format(user_id=user_id))
    except GraphError as exc:
        reason = mailbox_unavailable(exc, mailbox_wide=True)
        if reason is None:
            users.set_next_mailbox_check(db, user_id, now + RETRY_SOON)
            return f"retry:{exc.status}"
        users.mark_cannot_sync(db, user_id, reason, now + CHECK_EVERY, now)
        return f"unavailable:{reason}"
    except (ReconnectRequired, TokenUnavailable):
        users.set_next_mailbox_check(db, user_id, now + CHECK_EVERY)
        return "no-token"
    if not users.mark_available(db, user_id, now):
        return "skipped"
    log.info("user %s: the mailbox can be read again; syncing", user_id)
    outbox.connection_status_changed(db, redis, user_id, ConnectionStatus.CONNECTED, MAILBOX_AVAILABLE,
                                     ConnectionStatus.CANNOT_SYNC, now)
    users.mark_subscription_missing(db, user_id, now)
    queues.enqueue(redis, queues.SUBSCRIPTIONS, queues.ENSURE_SUBSCRIPTION, user_id)
    request_sync(redis, user_id, MAILBOX_AVAILABLE)
    return "available"
