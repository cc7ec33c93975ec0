"""Create, renew, reauthorize, recreate and delete a user's one Graph subscription.

Every operation on a user's subscription runs under ``calsync:lock:subscription:{user_id}``, so a
renewal, a lifecycle event and a reconnect never race each other into duplicates. Graph is told about
replacements (the old subscription is deleted) and the Redis mirror the webhook reads is kept in step.
Microsoft asks that a reauthorize and a PATCH of one subscription are never sent within 10 minutes of
each other; ``renewed_at`` / ``reauthorized_at`` enforce that. Every write (create, renew, reauthorize, delete)
first takes a slot of its tenant's pace (``service.subscriptions.pacing``): Graph limits subscription writes
per app and tenant, and all workers together keep to it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from pymongo.database import Database
from redis import Redis

from service import locks, metrics, queues
from service.config import Settings
from service.graph import GraphClient, GraphError, Throttled, mailbox_unavailable
from service.identity.tokens import ReconnectRequired, TokenUnavailable
from service.store import as_utc, users, utcnow
from service.store import subscriptions as store
from service.store.records import Subscription, SubscriptionStatus
from service.subscriptions import mirror
from service.subscriptions.certificate import KeyPair, load_keypair
from service.subscriptions.pacing import PaceExceeded, SubscriptionPacer
from service.sync import ids, mailboxes
from service.sync.requests import request_sync
from service.sync.runner import LOCK_KEY as SYNC_LOCK_KEY
from service.sync.runner import LOCK_SECONDS as SYNC_LOCK_SECONDS

log = logging.getLogger(__name__)

LOCK_KEY = "calsync:lock:subscription:{user_id}"
LOCK_SECONDS = 120
LOCK_WAIT_SECONDS = 60
# One queued lifecycle job per subscription and event (the webhook sets it, the job clears it).
LIFECYCLE_PENDING = "calsync:lifecycle-pending:{subscription_id}:{event}"
LIFECYCLE_PENDING_TTL = 600
QUIET_WINDOW = timedelta(minutes=10)        # between a reauthorize and a PATCH of the same subscription
# A replaced subscription lives on this long beside its successor: notifications Graph generated for it before
# the successor existed are still on their way (batched, retried), and are accepted until it goes.
SWITCH_OVERLAP = timedelta(minutes=2)
FIRST_BACKOFF = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=2)
STATS = "calsync:stats:subscriptions:{name}"
CHANGE_TYPES = "created,updated,deleted"
# The fields the sync stores; rich notifications carry only these (Graph requires $select for them).
RICH_SELECT = (
    "subject,start,end,originalStartTimeZone,originalEndTimeZone,isAllDay,organizer,attendees,isCancelled,"
    "showAs,isOnlineMeeting,type,seriesMasterId,iCalUId,lastModifiedDateTime,changeKey,sensitivity"
)


class Outcome(StrEnum):
    """What an operation on a subscription did (also its stats name)."""

    CREATED = "created"
    RENEWED = "renewed"
    REAUTHORIZED = "reauthorized"
    RECREATED = "recreated"
    RESYNC = "resync"            # a `missed` notification: the user is synced again
    FAILED = "failed"            # recorded on the subscription with a back-off; the sweep tries again
    SKIPPED = "skipped"          # nothing to do (user not connected, or Graph's quiet window)
    POSTPONED = "postponed"      # in the quiet window after a reauthorize: renewal waits for its end
    GONE = "gone"                # no such subscription (or it is removed) and nothing to recreate


class NotConnected(Exception):  # noqa: N818 - a state, not an error
    """The user is not connected: there is nothing we may subscribe to."""


def resource_for(user_id: str, rich: bool, me: bool = False) -> str:
    """``users/{id}/events``, or its documented equivalent ``me/events`` ("Any path starting with me can also be
    used with users/{id} instead of me"), which a replacement uses to exist beside the old subscription: Graph
    refuses a second one with "the same values for changeType and resource" (409)."""
    base = "me/events" if me else f"users/{user_id}/events"
    return f"{base}?$select={RICH_SELECT}" if rich else base


def subscription_body(settings: Settings, user_id: str, client_state: str, now: datetime,
                      keypair: KeyPair | None = None, me: bool = False) -> dict:
    """The POST /subscriptions body; ``keypair`` makes it a rich subscription."""
    minutes = settings.rich_subscription_minutes if keypair else settings.subscription_minutes
    body = {
        "changeType": CHANGE_TYPES,
        "notificationUrl": settings.notification_url,
        "lifecycleNotificationUrl": settings.lifecycle_url,
        "resource": resource_for(user_id, bool(keypair), me),
        "expirationDateTime": graph_time(now + timedelta(minutes=minutes)),
        "clientState": client_state,
        "latestSupportedTlsVersion": "v1_2",
    }
    if keypair:
        body.update(includeResourceData=True, encryptionCertificate=keypair.certificate_b64,
                    encryptionCertificateId=keypair.certificate_id)
    return body


@dataclass
class Subscriptions:
    """The subscription operations, with what they need: the stores, Graph as a given user, and a clock."""

    settings: Settings
    db: Database
    redis: Redis
    graph_for: Callable[[str], GraphClient]
    clock: Callable[[], datetime] = field(default=utcnow)
    pacer: SubscriptionPacer | None = None

    def __post_init__(self) -> None:
        if self.pacer is None:
            self.pacer = SubscriptionPacer(self.redis, writes=self.settings.subscription_writes_per_20_s)

    def _graph(self, user_id: str, tenant_id: str | None = None) -> PacedGraph:
        """Graph as the user (or with their tenant's app token), writes paced by their tenant."""
        if tenant_id is None:
            user = users.get(self.db, user_id)
            tenant_id = user.tenant_id if user else None
        return PacedGraph(self.graph_for(user_id), self.pacer, tenant_id)

    # ------------------------------------------------------------ create / recreate / delete

    def create(self, user_id: str, graph: GraphClient | None = None) -> Subscription:
        """A fresh subscription for a connected user, replacing (never duplicating) any previous one. ``graph``:
        the caller's client for the user's mailbox (else ``graph_for``'s, which reads their token source)."""
        with self._user_lock(user_id):
            return self._create_locked(user_id, self.clock(), graph)

    def ensure(self, user_id: str) -> Subscription | None:
        """Create the user's subscription and sync the gap since connect; None when they cannot have one."""
        try:
            subscription = self.create(user_id)
        except (NotConnected, ReconnectRequired, mailboxes.MailboxUnavailable) as exc:
            log.info("no subscription for user %s: %s", user_id, type(exc).__name__)
            return None
        request_sync(self.redis, user_id, "subscribed")  # changes between connect and the subscription's birth
        return subscription

    def recreate(self, user_id: str, reason: str) -> Subscription | None:
        """Replace a gone subscription and ask for a resync (changes in the gap were not notified)."""
        try:
            subscription = self.create(user_id)
        except (NotConnected, mailboxes.MailboxUnavailable):
            log.info("not recreating the subscription of user %s: not connected, or the mailbox cannot sync", user_id)
            return None
        self._count("recreated")
        request_sync(self.redis, user_id, reason)
        return subscription

    def delete_for_user(self, user_id: str) -> bool:
        """Delete the user's subscription at Graph (best effort) and here; True if there was one."""
        with self._user_lock(user_id):
            subscription = store.for_user(self.db, user_id)
            if subscription is None:
                return False
            mirror.forget(self.redis, subscription.id)
            store.delete(self.db, subscription.id)
            users.clear_subscription_missing(self.db, user_id)
        try:
            _delete_quietly(self._graph(user_id, subscription.tenant_id), subscription.id)
        except (ReconnectRequired, TokenUnavailable):
            log.info("subscription %s left to expire at Graph: no token for user %s", subscription.id, user_id)
        self._count("deleted")
        return True

    # ------------------------------------------------------------ renew / reauthorize

    def renew(self, subscription_id: str, fresh_token: bool = False) -> Outcome:
        """PATCH a subscription's expiry (which also reauthorizes it); 404 → recreate; failures back off."""
        now = self.clock()
        with self._held(subscription_id) as held:
            if isinstance(held, Outcome):
                return held
            if held.reauthorized_at and now - held.reauthorized_at < QUIET_WINDOW:
                store.postpone(self.db, subscription_id, held.reauthorized_at + QUIET_WINDOW)
                return Outcome.POSTPONED
            minutes = self.settings.rich_subscription_minutes if held.rich else self.settings.subscription_minutes
            wanted = graph_time(now + timedelta(minutes=minutes))
            response = self._call(held, now, "PATCH", f"subscriptions/{subscription_id}", fresh_token,
                                  json={"expirationDateTime": wanted})
            if isinstance(response, Outcome):
                outcome = response
            else:
                body = response.json() if response.content else {}
                expires_at = parse_time(body.get("expirationDateTime"), wanted)
                store.mark_renewed(self.db, subscription_id, expires_at, now)
                mirror.remember(self.redis, replace(held, expires_at=expires_at))
                self._count(Outcome.RENEWED)
                return Outcome.RENEWED
        return self._after(outcome, held.user_id)

    def reauthorize(self, subscription_id: str, fresh_token: bool = False) -> Outcome:
        """POST /subscriptions/{id}/reauthorize (no expiry change); refused within 10 minutes of a PATCH."""
        now = self.clock()
        with self._held(subscription_id) as held:
            if isinstance(held, Outcome):
                return held
            if held.renewed_at and now - held.renewed_at < QUIET_WINDOW:
                return Outcome.SKIPPED  # the PATCH already reauthorized it
            response = self._call(held, now, "POST", f"subscriptions/{subscription_id}/reauthorize", fresh_token)
            if isinstance(response, Outcome):
                outcome = response
            else:
                store.mark_reauthorized(self.db, subscription_id, now)
                self._count(Outcome.REAUTHORIZED)
                return Outcome.REAUTHORIZED
        return self._after(outcome, held.user_id)

    def _after(self, outcome: Outcome, user_id: str) -> Outcome:
        """After a failed call, outside the user's lock: a subscription Graph lost is recreated."""
        if outcome == Outcome.GONE:
            return Outcome.RECREATED if self.recreate(user_id, "subscription-gone") else Outcome.GONE
        return outcome

    # ------------------------------------------------------------ lifecycle notifications

    def handle_lifecycle(self, subscription_id: str, event: str) -> Outcome:
        """The documented recovery for one lifecycle notification (already verified by the webhook)."""
        self.redis.delete(LIFECYCLE_PENDING.format(subscription_id=subscription_id, event=event))
        subscription = store.get(self.db, subscription_id)
        if subscription is None:
            log.info("lifecycle %s for unknown subscription %s ignored", event, subscription_id)
            return Outcome.GONE
        if event == "missed":
            request_sync(self.redis, subscription.user_id, "missed")
            return Outcome.RESYNC
        if event == "subscriptionRemoved":
            self.mark_removed(subscription, "subscriptionRemoved lifecycle notification")
            return Outcome.RECREATED if self.recreate(subscription.user_id, "subscription-removed") else Outcome.GONE
        if event == "reauthorizationRequired":
            return self.on_reauthorization_required(subscription_id)
        raise ValueError(f"unknown lifecycle event {event!r}")

    def on_reauthorization_required(self, subscription_id: str) -> Outcome:
        """Renew (PATCH reauthorizes too) unless a PATCH or reauthorize happened in the last 10 minutes."""
        now = self.clock()
        subscription = store.get(self.db, subscription_id)
        if subscription is None:
            return Outcome.GONE
        if subscription.renewed_at and now - subscription.renewed_at < QUIET_WINDOW:
            return Outcome.SKIPPED
        if subscription.reauthorized_at and now - subscription.reauthorized_at < QUIET_WINDOW:
            return self.reauthorize(subscription_id, fresh_token=True)
        return self.renew(subscription_id, fresh_token=True)

    def mark_removed(self, subscription: Subscription, reason: str) -> None:
        """Graph no longer holds this subscription: record it, and that its owner waits for a new one."""
        store.mark_removed(self.db, subscription.id, reason)
        users.mark_subscription_missing(self.db, subscription.user_id)

    # ------------------------------------------------------------ internals

    @contextmanager
    def _user_lock(self, user_id: str) -> Iterator[None]:
        """Serialise subscription work for one user across workers (LockBusy if it stays busy)."""
        with locks.held(self.redis, LOCK_KEY.format(user_id=user_id), LOCK_SECONDS, wait=LOCK_WAIT_SECONDS):
            yield

    @contextmanager
    def _held(self, subscription_id: str) -> Iterator[Subscription | Outcome]:
        """The stored subscription, re-read under its owner's lock; or GONE / SKIPPED when there is nothing to do."""
        subscription = store.get(self.db, subscription_id)
        if subscription is None or subscription.status == SubscriptionStatus.REMOVED:
            yield Outcome.GONE
            return
        with self._user_lock(subscription.user_id):
            subscription = store.get(self.db, subscription_id)
            owner = users.get(self.db, subscription.user_id) if subscription else None
            if subscription is None:
                yield Outcome.GONE
            elif owner is None or not owner.connected:
                yield Outcome.SKIPPED
            else:
                yield subscription

    def _create_locked(self, user_id: str, now: datetime, client: GraphClient | None = None) -> Subscription:
        user = users.get(self.db, user_id)
        if user is None or not user.connected:
            raise NotConnected(user_id)
        graph = PacedGraph(client, self.pacer, user.tenant_id) if client is not None \
            else self._graph(user_id, user.tenant_id)
        keypair = load_keypair(self.settings) if self.settings.rich_notifications else None
        client_state = secrets.token_urlsafe(48)  # 64 characters; Graph allows 128
        body = subscription_body(self.settings, user_id, client_state, now, keypair)
        previous = store.for_user(self.db, user_id)
        if previous:  # Graph refuses a second subscription on the same resource (409): the old one goes first
            _delete_quietly(graph, previous.id)
        try:
            created = _post_subscription(graph, body)
        except GraphError as exc:
            self._count("create_failed")
            if previous:
                store.mark_removed(self.db, previous.id, f"replacement failed: {exc}")
            reason = mailbox_unavailable(exc, mailbox_wide=True)
            if reason is not None:   # not a failure to retry: the user cannot sync, checked again daily
                mailboxes.mark(self.db, self.redis, user_id, reason, now)
                raise mailboxes.MailboxUnavailable(reason) from exc
            users.mark_subscription_missing(self.db, user_id, now)
            raise
        subscription = self._record(created, body, client_state, user, bool(keypair), now)
        store.replace_for_user(self.db, subscription)
        users.clear_subscription_missing(self.db, user_id)
        mirror.remember(self.redis, subscription)
        if previous and previous.id != subscription.id:
            mirror.forget(self.redis, previous.id)
        self._count(Outcome.CREATED)
        log.info("created subscription %s for user %s (expires %s)", subscription.id, user_id, subscription.expires_at)
        return subscription

    @staticmethod
    def _record(created: dict, body: dict, client_state: str, user, rich: bool, now: datetime) -> Subscription:
        """Our record of a subscription Graph just created (GraphClient asks for immutable ids on every request,
        so its notifications carry them)."""
        return Subscription(
            id=created["id"], user_id=user.id, client_state=client_state, tenant_id=user.tenant_id,
            resource=body["resource"], expires_at=parse_time(created.get("expirationDateTime"),
                                                             body["expirationDateTime"]),
            rich=rich, created_at=now, immutable_ids=True,
        )

    # ------------------------------------------------------------ replacing without a gap

    def switch(self, subscription_id: str) -> Outcome:
        """Replace a subscription marked for recreation (``recreate_reason``) without a pause in notifications:
        the owner's stored ids become immutable first (under their sync lock), then the new subscription is
        created beside the old one and mirrored for the webhook; the old one is deleted ``SWITCH_OVERLAP`` later
        (``retire``), when what Graph had queued for it has been delivered."""
        held = store.get(self.db, subscription_id)
        if held is None or not held.live or not held.recreate_reason:
            return Outcome.GONE if held is None or not held.live else Outcome.SKIPPED
        user = users.get(self.db, held.user_id)
        if user is None or not user.connected:
            return Outcome.SKIPPED
        now = self.clock()
        try:
            with locks.held(self.redis, SYNC_LOCK_KEY.format(user_id=user.id), SYNC_LOCK_SECONDS,
                            wait=LOCK_WAIT_SECONDS):
                ids.ensure_immutable(self.db, self.graph_for(user.id), user, now)
            with self._user_lock(user.id):
                current = store.get(self.db, subscription_id)
                if current is None or not current.live or not current.recreate_reason:
                    return Outcome.SKIPPED   # replaced meanwhile (a lifecycle event, a reconnect)
                self._replace_beside_locked(current, now)
        except (ReconnectRequired, TokenUnavailable, locks.LockBusy) as exc:
            store.postpone(self.db, subscription_id, now + FIRST_BACKOFF)
            log.info("switching subscription %s waits: %s", subscription_id, type(exc).__name__)
            return Outcome.POSTPONED
        except GraphError as exc:
            self._record_failure(held, now, f"switch: {exc}", exc.retry_after if isinstance(exc, Throttled) else None)
            return Outcome.FAILED
        self._count(Outcome.RECREATED)
        return Outcome.RECREATED

    def _replace_beside_locked(self, old: Subscription, now: datetime) -> Subscription:
        user = users.get(self.db, old.user_id)
        graph = self._graph(old.user_id, user.tenant_id if user else None)
        keypair = load_keypair(self.settings) if self.settings.rich_notifications else None
        client_state = secrets.token_urlsafe(48)
        # An application token has no "me": a tenant-wide mailbox's subscription is replaced in turn (below).
        body = subscription_body(self.settings, old.user_id, client_state, now, keypair,
                                 me=not old.resource.startswith("me/") and not user.tenant_wide)
        try:
            if user.tenant_wide:
                raise GraphError(409, "Conflict", "one resource form under an application token")
            created = graph.request("POST", "subscriptions", json=body).json()
            gap = False
        except GraphError as exc:
            if exc.status != 409:
                raise
            # Graph counts the two resource forms as one: delete the old one first after all (a gap of one
            # request and the handshake), and ask for a sync to read what changed in it.
            log.warning("subscription %s: Graph refused a second one beside it (409); replacing it in turn", old.id)
            _delete_quietly(graph, old.id)
            created = graph.request("POST", "subscriptions", json=body).json()
            gap = True
        subscription = self._record(created, body, client_state, user, bool(keypair), now)
        store.replace_for_user(self.db, subscription)
        mirror.remember(self.redis, subscription)      # the webhook accepts the new one from here on ...
        if gap:
            mirror.forget(self.redis, old.id)
            request_sync(self.redis, old.user_id, "subscription-switch-gap")
        else:                                          # ... and the old one goes once its deliveries are in
            queues.get_queue(queues.SUBSCRIPTIONS, self.redis).enqueue_in(
                SWITCH_OVERLAP, queues.RETIRE_SUBSCRIPTION, old.id, old.user_id, retry=None, job_timeout=120,
                result_ttl=3600, failure_ttl=7 * 86400)
        log.info("subscription %s of user %s replaced by %s (%s) without a gap", old.id, old.user_id, subscription.id,
                 old.recreate_reason)
        return subscription

    def retire(self, subscription_id: str, user_id: str) -> bool:
        """Delete a subscription its successor replaced (after the overlap); the webhook forgets it. Its record is
        gone already. False when it could not be deleted at Graph (it then expires on its own)."""
        if store.get(self.db, subscription_id) is not None:
            return False   # it is someone's current subscription again: not ours to retire
        try:
            with self._user_lock(user_id):
                _delete_quietly(self._graph(user_id), subscription_id)
            deleted = True
        except (ReconnectRequired, TokenUnavailable):
            deleted = False
        mirror.forget(self.redis, subscription_id)
        self._count("retired")
        return deleted

    def _call(self, subscription: Subscription, now: datetime, method: str, path: str, fresh_token: bool,
              **kwargs):
        """One Graph call for a stored subscription: the response; or GONE on 404 (marked removed), SKIPPED
        when the user must reconnect, FAILED after recording the failure and its back-off."""
        try:
            graph = self._graph(subscription.user_id, subscription.tenant_id)
            if fresh_token:
                # Graph ties the subscription to the token it is handed: after a reauthorization challenge
                # it must get one with a full lifetime, not a cached one about to expire.
                graph.token(force_refresh=True)
            return graph.request(method, path, **kwargs)
        except ReconnectRequired:
            return Outcome.SKIPPED
        except GraphError as exc:
            if exc.status == 404:
                self.mark_removed(subscription, "Graph 404: subscription no longer exists")
                return Outcome.GONE
            wait = exc.retry_after if isinstance(exc, Throttled) and exc.retry_after else None
            self._record_failure(subscription, now, str(exc), wait)
            return Outcome.FAILED
        except TokenUnavailable as exc:
            self._record_failure(subscription, now, f"token unavailable: {type(exc).__name__}", None)
            return Outcome.FAILED

    def _record_failure(self, subscription: Subscription, now: datetime, error: str, wait: float | None) -> None:
        delay = timedelta(seconds=wait) if wait else min(FIRST_BACKOFF * 2 ** subscription.failures, MAX_BACKOFF)
        store.mark_failure(self.db, subscription.id, error, now + delay)
        self._count(Outcome.FAILED)
        log.warning("subscription %s of user %s: %s (attempt %d, next in %s)",
                    subscription.id, subscription.user_id, error, subscription.failures + 1, delay)

    def _count(self, name: str) -> None:
        metrics.SUBSCRIPTION_OPERATIONS.labels(str(name)).inc()
        self.redis.incr(STATS.format(name=str(name)))


# A DELETE also runs inside web requests (an opt-out, a disconnect), which must answer well within gunicorn's 30 s:
# it waits at most this long for its slot. Refused, it fails as any failed delete does: the subscription expires
# at Graph by itself, and the webhook no longer knows it.
DELETE_MAX_WAIT = 2.0
# Outlook's per-mailbox throttling (the mailbox gate pauses that mailbox); not the subscription service's limit.
MAILBOX_THROTTLE_CODES = frozenset({"MailboxBusy", "ApplicationThrottled"})


class PacedGraph:
    """A GraphClient whose writes wait for a slot of the tenant's pace; a 429 on a write pauses the tenant's
    writes for every worker (its Retry-After). Reads pass straight through."""

    def __init__(self, graph: GraphClient, pacer: SubscriptionPacer | None, tenant_id: str | None):
        self.graph = graph
        self.pacer = pacer
        self.tenant_id = tenant_id

    def token(self, force_refresh: bool = False) -> str:
        return self.graph.token(force_refresh=force_refresh)

    def request(self, method: str, path_or_url: str, **kwargs):
        if method == "GET" or self.pacer is None:
            return self.graph.request(method, path_or_url, **kwargs)
        try:
            self.pacer.acquire(self.tenant_id, DELETE_MAX_WAIT if method == "DELETE" else None)
        except PaceExceeded as exc:
            raise Throttled(429, "SubscriptionWritesPaced", str(exc), retry_after=exc.retry_after) from None
        try:
            return self.graph.request(method, path_or_url, **kwargs)
        except GraphError as exc:
            if exc.status == 429 and exc.code not in MAILBOX_THROTTLE_CODES:
                self.pacer.pause(self.tenant_id, exc.retry_after or 2.0)
            raise

    def get_json(self, path_or_url: str, **kwargs) -> dict:
        return self.request("GET", path_or_url, **kwargs).json()


def _delete_quietly(graph: GraphClient | PacedGraph, subscription_id: str) -> None:
    """DELETE a subscription at Graph; already gone is fine, other failures only mean it expires on its own."""
    try:
        graph.request("DELETE", f"subscriptions/{subscription_id}")
    except GraphError as exc:
        if exc.status != 404:
            log.warning("could not delete subscription %s at Graph (%s); it will expire", subscription_id, exc)


def _post_subscription(graph: GraphClient | PacedGraph, body: dict) -> dict:
    """POST /subscriptions; after a 409 (a leftover we lost track of) delete ours on that resource, retry once."""
    try:
        return graph.request("POST", "subscriptions", json=body).json()
    except GraphError as exc:
        if exc.status != 409:
            raise
    listed = graph.get_json("subscriptions").get("value") or []
    for existing in listed:  # GET /subscriptions lists only this app's subscriptions
        if (existing.get("resource") or "").lower() == body["resource"].lower():
            _delete_quietly(graph, existing["id"])
    return graph.request("POST", "subscriptions", json=body).json()


def graph_time(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(value: object, fallback: str) -> datetime:
    """Graph's expirationDateTime (7 fractional digits, Z); our requested value if it is missing or odd."""
    for candidate in (value, fallback):
        if isinstance(candidate, str):
            try:
                return as_utc(datetime.fromisoformat(candidate.replace("Z", "+00:00")))
            except ValueError:
                continue
    return utcnow()
