"""A user's connection, above the parts it drives: connect, disconnect, deleting everything we hold, a
deleted account, reconnect mail.

Connecting stores the tokens and the user, plans their digest and asks for the subscription and the
first sync; disconnecting deletes the Graph subscription first, then the tokens (and, if asked, the
stored calendar data). Deleting all of a user's data does that and then purges every record of them
while holding their sync lock, so no sync or rich notification writes anything back. This module sits
above subscriptions, sync and the digest; nothing below it imports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msal
from pymongo.database import Database
from redis import Redis

from service import channels, locks, outbox, queues
from service.config import Settings
from service.digest import cards
from service.digest import plan as digest_plan
from service.identity import crypto
from service.identity.tokens import Tokens
from service.mail import Mailer
from service.store import activity, calendars, coaching, digests, events, exclusions, preps, series, users, utcnow
from service.store import channels as channels_store
from service.store import outbound as outbound_store
from service.store import tokens as token_store
from service.store.records import ConnectionStatus, User
from service.subscriptions.lifecycle import Subscriptions
from service.sync import requests as sync_requests
from service.sync.requests import request_sync
from service.sync.runner import LOCK_KEY as SYNC_LOCK_KEY
from service.sync.runner import LOCK_SECONDS as SYNC_LOCK_SECONDS

log = logging.getLogger(__name__)

RECONNECT_MAIL_INTERVAL = timedelta(hours=24)
DATA_DELETED = "data_deleted"   # the reason connection.status_changed gives when a user deleted all their data
PURGE_WAIT_SECONDS = 15       # for a running sync to stop at its next page; then a job finishes the purge


@dataclass
class Connected:
    user: User
    first_time: bool


@dataclass
class Connections:
    settings: Settings
    db: Database
    redis: Redis
    tokens: Tokens
    subscriptions: Subscriptions
    mailer: Mailer

    def connect(self, user_id: str, me: dict, tenant_id: str, home_account_id: str,
                cache: msal.SerializableTokenCache, time_zone: str | None) -> Connected:
        """Store a verified sign-in (tokens first: a connected user always has a cache), then start syncing."""
        before = users.get(self.db, user_id)
        first_time = before is None
        with self.tokens.locked(user_id):
            token_store.save_blob(self.db, user_id, crypto.encrypt(self.settings, cache.serialize()))
            users.upsert_from_graph(self.db, me, tenant_id, home_account_id)
        previous = str(before.connection.status) if before and before.connection.status else None
        if previous != ConnectionStatus.CONNECTED:
            outbox.connection_status_changed(self.db, self.redis, user_id, ConnectionStatus.CONNECTED,
                                             "connected" if first_time else "reconnected", previous)
        zone = valid_time_zone(time_zone)
        if zone:
            users.set_time_zone_if_unset(self.db, user_id, zone)
        digest_plan.reschedule(self.db, user_id, self.settings.digest_default_time)
        log.info("user %s connected their calendar (%s)", user_id, "new" if first_time else "reconnect")
        self.start_syncing(user_id)
        return Connected(users.get(self.db, user_id), first_time)

    def start_syncing(self, user_id: str) -> None:
        """Ask for the Graph subscription and the initial backfill (both idempotent downstream)."""
        users.mark_subscription_missing(self.db, user_id)  # until ensure_subscription has made one
        queues.enqueue(self.redis, queues.SUBSCRIPTIONS, queues.ENSURE_SUBSCRIPTION, user_id)
        request_sync(self.redis, user_id, "connect")

    def disconnect(self, user_id: str, purge: bool, reason: str = "disconnected by the user") -> dict:
        """Delete the Graph subscription, then the tokens; keep or purge the stored events. Returns what was done."""
        done = {"subscription_deleted": self._delete_subscription(user_id)}
        with self.tokens.locked(user_id):  # a refresh in flight must not write the cache back after we delete it
            before = users.set_connection_status(self.db, user_id, ConnectionStatus.DISCONNECTED, reason=reason)
            done["tokens_deleted"] = token_store.delete(self.db, user_id)
        if before is not None and before.connection.status != ConnectionStatus.DISCONNECTED:
            outbox.connection_status_changed(self.db, self.redis, user_id, ConnectionStatus.DISCONNECTED, reason,
                                             str(before.connection.status or "") or None)
        if purge:
            done["events"] = events.delete_for_user(self.db, user_id)
            done["calendars"] = calendars.delete_for_user(self.db, user_id)
        log.info("user %s disconnected (purge=%s)", user_id, purge)
        return done

    def delete_all_data(self, user_id: str) -> dict:
        """Delete everything calsync holds about the user: the Graph subscription first, then the tokens,
        then (under the sync lock) events, calendars, exclusions, digest records and the user record. The
        people-directory entry belongs to the organization and stays. Returns what was done; ``pending``
        means a sync still held the lock and a job finishes the purge once it has stopped."""
        sync_requests.mark_deleting(self.redis, user_id)   # syncs stop before their next write
        # The subscription goes while the user is still connected: its DELETE at Graph needs their token.
        done: dict = {"subscription_deleted": self._delete_subscription(user_id)}
        before = users.set_connection_status(self.db, user_id, ConnectionStatus.DISCONNECTED, reason="data deleted")
        # Their only outbound events kept through the purge are status changes: receivers learn to forget them.
        outbox.connection_status_changed(
            self.db, self.redis, user_id, ConnectionStatus.DISCONNECTED, DATA_DELETED,
            str(before.connection.status) if before and before.connection.status else None)
        with self.tokens.locked(user_id):
            done["tokens_deleted"] = token_store.delete(self.db, user_id)
        try:
            done |= self.purge(user_id, wait=PURGE_WAIT_SECONDS)
        except locks.LockBusy:
            queues.enqueue(self.redis, queues.MAINTENANCE, queues.PURGE_USER_DATA, user_id)
            done["pending"] = True
        log.info("user %s: all data deletion %s", user_id, "queued" if done.get("pending") else "done")
        return done

    def purge(self, user_id: str, wait: float = SYNC_LOCK_SECONDS + 10) -> dict:
        """Remove every stored record of the user while holding their sync lock (LockBusy if a sync keeps it)."""
        with locks.held(self.redis, SYNC_LOCK_KEY.format(user_id=user_id), SYNC_LOCK_SECONDS, wait=wait):
            self._delete_subscription(user_id)      # one created meanwhile (a connect racing the deletion)
            token_store.delete(self.db, user_id)
            done = {"events": events.delete_for_user(self.db, user_id),
                    "calendars": calendars.delete_for_user(self.db, user_id),
                    "exclusions": exclusions.delete_for_user(self.db, user_id),
                    "digests": digests.delete_for_user(self.db, user_id),
                    "preps": preps.delete_for_user(self.db, user_id),
                    "coaching": coaching.delete_for_user(self.db, user_id),
                    "outbound_events": outbound_store.delete_events_for_user(
                        self.db, user_id, keep_types=(outbox.CONNECTION_STATUS_CHANGED,)),
                    "activity": activity.delete_for_user(self.db, user_id),
                    "channels": channels_store.delete_for_user(self.db, user_id),
                    "series_ranges": series.delete_for_user(self.db, user_id),
                    "user": users.delete(self.db, user_id)}
        sync_requests.deletion_done(self.redis, user_id)
        return done

    def user_gone(self, user_id: str) -> None:
        """Graph no longer knows the user (the account was deleted): disconnect them, keeping their data."""
        log.warning("Graph no longer knows user %s; disconnecting", user_id)
        self.disconnect(user_id, purge=False, reason="user not found in Microsoft Graph")
        calendars.clear_cursor(self.db, user_id)
        users.record_sync_failure(self.db, user_id, utcnow(), "disconnected", "404 user not found")

    def send_reconnect_mail(self, user_id: str, now: datetime | None = None, rt=None) -> bool:
        """Remind a user who must reconnect (a link to /connect) on the channels they chose for reminders (email
        by default), at most once per 24 h; True if it went out. ``rt`` (a Runtime) is needed for Teams and
        Slack; without it this object stands in for email."""
        now = now or utcnow()
        before = users.claim_reconnect_mail(self.db, user_id, RECONNECT_MAIL_INTERVAL, now)
        if before is None:
            log.info("no reconnect mail for user %s (sent within 24 h, or no longer needed)", user_id)
            return False
        if not before.email:
            log.warning("user %s must reconnect but has no email address", user_id)
            return False
        try:
            link = f"{self.settings.public_url.rstrip('/')}/connect"
            outline = cards.reconnect_outline(before.name, link)
            blocks, text = cards.block_kit(outline)
            previous = before.connection.reconnect_mail_sent_at
            # One record per reminder: a retry (the claim given back) names the same one, so channels sent stay sent.
            record = f"reconnect:{user_id}:{previous.isoformat() if previous else 'first'}"
            channels.deliver(rt or self, before, "reconnect", channels.Outgoing(
                "reconnect", record, text, email=reconnect_message(self.settings.public_url, before),
                card=cards.adaptive_card(outline), blocks=blocks))
        except BaseException:
            # Give the claim back so RQ's retry can send it; the error itself propagates to RQ.
            users.release_reconnect_mail(self.db, user_id, now, before.connection.reconnect_mail_sent_at)
            raise
        return True

    def _delete_subscription(self, user_id: str) -> bool:
        try:
            self.subscriptions.delete_for_user(user_id)
        except Exception as exc:  # noqa: BLE001 - the user's disconnect must succeed; Graph drops the subscription
            # by itself within days, and without tokens nothing renews it.
            log.warning("could not delete the Graph subscription of user %s (%s)", user_id, type(exc).__name__)
            return False
        return True


def reconnect_message(public_url: str, user: User) -> EmailMessage:
    """The plain-text reconnect mail: what stopped, why it matters, the one link to fix it."""
    link = f"{public_url.rstrip('/')}/connect"
    message = EmailMessage()
    message["To"] = user.email
    message["Subject"] = "calsync: please reconnect your calendar"
    message.set_content(
        f"Hello {user.name},\n\n"
        "calsync can no longer read your Microsoft 365 calendar: Microsoft asked for you to sign in again\n"
        "(your password may have changed, or access was revoked). Until you reconnect, your meetings are\n"
        "not kept up to date and your daily digest may be incomplete.\n\n"
        f"Reconnect here (it takes a few seconds): {link}\n\n"
        "Your settings and history are kept. If you did not expect this, you can ignore this mail;\n"
        "we will not send another reminder for 24 hours.\n"
    )
    return message


def valid_time_zone(name: str | None) -> str | None:
    """An IANA zone name the browser reported, if it is one we know; anything else is ignored."""
    if not name or not isinstance(name, str) or len(name) > 64 or ".." in name or name.startswith("/"):
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name
