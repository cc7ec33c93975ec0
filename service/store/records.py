"""Typed records at the store boundary, and the status names, in one place.

Stores return these instead of raw documents, so callers ask ``user.connected`` rather than digging in
``user["connection"]["status"]``; the document shapes are docs/design.md's and the stores' business.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from service.store import as_utc

USER_SOURCE = "user"   # token sources of a mailbox: the person's own delegated token ...
APP_SOURCE = "app"     # ... or the tenant's application token (tenant-wide connection)


class ConnectionStatus(StrEnum):
    CONNECTED = "connected"
    NEEDS_RECONNECT = "needs_reconnect"
    DISCONNECTED = "disconnected"
    CANNOT_SYNC = "cannot_sync"          # the grant is fine, the mailbox cannot be read (service.sync.mailboxes)
    NEEDS_ADMIN = "needs_admin"          # tenant-wide: the tenant's admin consent is gone (service.tenantwide)


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    FAILING = "failing"
    REMOVED = "removed"


LIVE_SUBSCRIPTION = (SubscriptionStatus.ACTIVE, SubscriptionStatus.FAILING)


@dataclass(frozen=True)
class Connection:
    status: ConnectionStatus | str | None = None   # a status this code does not name yet stays its stored string
    reason: str | None = None
    since: datetime | None = None
    home_account_id: str | None = None
    reconnect_mail_sent_at: datetime | None = None
    next_check_at: datetime | None = None     # cannot_sync: when the mailbox is looked at again

    @classmethod
    def from_doc(cls, doc: dict | None) -> Connection:
        doc = doc or {}
        status = doc.get("status")
        known = ConnectionStatus(status) if status in ConnectionStatus._value2member_map_ else None
        return cls(known or (status if isinstance(status, str) and status else None),
                   doc.get("reason"), as_utc(doc.get("since")), doc.get("home_account_id"),
                   as_utc(doc.get("reconnect_mail_sent_at")), as_utc(doc.get("next_check_at")))


CONNECTION_WORDS = {ConnectionStatus.CONNECTED: "connected",
                    ConnectionStatus.NEEDS_RECONNECT: "needs to be reconnected",
                    ConnectionStatus.DISCONNECTED: "disconnected",
                    ConnectionStatus.CANNOT_SYNC: "cannot sync",
                    ConnectionStatus.NEEDS_ADMIN: "waits for the organization's administrator"}


def connection_words(status: str | None) -> str:
    """A connection status in words: the known ones by name, any other stored status (a newer release's, say
    ``no_mailbox``) from its own name, so new statuses show without a change here."""
    if not status:
        return "unknown"
    return CONNECTION_WORDS.get(status) or str(status).replace("_", " ").replace("-", " ").strip()


WEEKDAYS = (0, 1, 2, 3, 4)             # Monday to Friday (date.weekday() numbers): the default digest days


def _days(raw: object) -> tuple[int, ...]:
    """Stored digest days as sorted weekday numbers; anything unusable reads as the default."""
    if not isinstance(raw, list | tuple):
        return WEEKDAYS
    days = tuple(sorted({d for d in raw if isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6}))
    return days or WEEKDAYS


@dataclass(frozen=True)
class DigestSettings:
    enabled: bool = True
    time: str | None = None           # "HH:MM"; None: the deployment's default
    send_empty: bool = False
    next_at: datetime | None = None   # when the next one goes out (service.digest.plan)
    next_date: str | None = None
    last_date: str | None = None
    days: tuple[int, ...] = WEEKDAYS  # the weekdays (0 = Monday) the digest goes out on

    @classmethod
    def from_doc(cls, doc: dict | None) -> DigestSettings:
        doc = doc or {}
        return cls(doc.get("enabled", True) is not False, doc.get("time"), bool(doc.get("send_empty", False)),
                   as_utc(doc.get("next_at")), doc.get("next_date"), doc.get("last_date"), _days(doc.get("days")))


class PrepMeetings(StrEnum):
    """Which meetings get a prep mail."""

    ALL = "all"
    ONE_ON_ONE = "one_on_one"         # exactly one other person
    EXTERNAL = "external"             # someone from outside the user's organization
    MIN_SIZE = "min_size"             # at least ``min_size`` people, the user included


PREP_DEFAULT_MINUTES = 15
PREP_MINUTES = (5, 60)                # the lead time a user may choose, inclusive
PREP_DEFAULT_MIN_SIZE = 3
PREP_MIN_SIZE = (2, 100)


@dataclass(frozen=True)
class PrepSettings:
    """Meeting prep mails: ``minutes`` before each chosen meeting (None: off)."""

    minutes: int | None = PREP_DEFAULT_MINUTES
    meetings: PrepMeetings = PrepMeetings.ALL
    min_size: int = PREP_DEFAULT_MIN_SIZE

    @property
    def enabled(self) -> bool:
        return self.minutes is not None

    @classmethod
    def from_doc(cls, doc: dict | None) -> PrepSettings:
        doc = doc or {}
        minutes = doc.get("minutes", PREP_DEFAULT_MINUTES)
        if not (isinstance(minutes, int) and PREP_MINUTES[0] <= minutes <= PREP_MINUTES[1]):
            minutes = None if minutes is None or minutes == 0 else PREP_DEFAULT_MINUTES
        meetings = doc.get("meetings")
        size = doc.get("min_size")
        return cls(minutes,
                   PrepMeetings(meetings) if meetings in PrepMeetings._value2member_map_ else PrepMeetings.ALL,
                   size if isinstance(size, int) and PREP_MIN_SIZE[0] <= size <= PREP_MIN_SIZE[1]
                   else PREP_DEFAULT_MIN_SIZE)


@dataclass(frozen=True)
class SyncInfo:
    last_notification_at: datetime | None = None
    last_sync_at: datetime | None = None
    last_result: str | None = None
    last_error: str | None = None
    error_count: int = 0
    lag_seconds: float | None = None
    calendars_refreshed_at: datetime | None = None

    @classmethod
    def from_doc(cls, doc: dict | None) -> SyncInfo:
        doc = doc or {}
        return cls(as_utc(doc.get("last_notification_at")), as_utc(doc.get("last_sync_at")), doc.get("last_result"),
                   doc.get("last_error"), int(doc.get("error_count") or 0), doc.get("lag_seconds"),
                   as_utc(doc.get("calendars_refreshed_at")))


@dataclass(frozen=True)
class User:
    id: str
    email: str = ""
    display_name: str = ""
    tenant_id: str | None = None
    time_zone: str | None = None          # IANA, chosen or inferred
    graph_time_zone: str | None = None    # what Graph said (often a Windows name)
    time_zone_source: str | None = None   # "user" when chosen on the settings page, "browser" at connect
    connection: Connection = field(default_factory=Connection)
    digest: DigestSettings = field(default_factory=DigestSettings)
    prep: PrepSettings = field(default_factory=PrepSettings)
    sync: SyncInfo = field(default_factory=SyncInfo)
    subscription_missing_since: datetime | None = None
    created_at: datetime | None = None
    graph_ids: str | None = None          # "immutable" once stored ids are Graph's immutable ones (sync.ids)
    token_source: str = USER_SOURCE       # APP_SOURCE: read with the tenant's application token (tenant-wide)
    entra_id: str | None = None           # the Entra object id (== id; kept explicit for the directory's joins)
    opted_out_at: datetime | None = None  # the person opted out: nothing of theirs is read or kept
    opted_in_at: datetime | None = None   # an opt-in tenant syncs only people who opted in
    has_user_grant: bool = False          # a per-user connection's token cache exists (switching back keeps it)

    @property
    def immutable_ids(self) -> bool:
        return self.graph_ids == IMMUTABLE

    @property
    def tenant_wide(self) -> bool:
        """Read with the tenant's application token (enrolled by the tenant's admin), not the person's own."""
        return self.token_source == APP_SOURCE

    @property
    def connected(self) -> bool:
        """Whether we may read this user's calendar now."""
        return self.connection.status == ConnectionStatus.CONNECTED

    @property
    def name(self) -> str:
        return self.display_name or self.email

    @classmethod
    def from_doc(cls, doc: dict) -> User:
        return cls(
            id=doc["_id"], email=doc.get("email") or "", display_name=doc.get("display_name") or "",
            tenant_id=doc.get("tenant_id"), time_zone=doc.get("time_zone"), graph_time_zone=doc.get("graph_time_zone"),
            time_zone_source=doc.get("time_zone_source"), connection=Connection.from_doc(doc.get("connection")),
            digest=DigestSettings.from_doc(doc.get("digest")), prep=PrepSettings.from_doc(doc.get("prep")),
            sync=SyncInfo.from_doc(doc.get("sync")),
            subscription_missing_since=as_utc(doc.get("subscription_missing_since")),
            created_at=as_utc(doc.get("created_at")), graph_ids=doc.get("graph_ids"),
            token_source=doc.get("token_source") or "user", entra_id=doc.get("entra_id"),
            opted_out_at=as_utc(doc.get("opted_out_at")), opted_in_at=as_utc(doc.get("opted_in_at")),
            has_user_grant=bool(doc.get("has_user_grant")),
        )


IMMUTABLE = "immutable"


@dataclass(frozen=True)
class Subscription:
    id: str
    user_id: str
    client_state: str = field(default="", repr=False)   # only while creating it: never stored
    tenant_id: str | None = None
    resource: str = ""
    expires_at: datetime | None = None
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    rich: bool = False
    created_at: datetime | None = None
    last_notification_at: datetime | None = None
    renewed_at: datetime | None = None
    reauthorized_at: datetime | None = None
    failures: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    client_state_sha256: str = field(default="", repr=False)  # what is stored: the webhook compares digests
    immutable_ids: bool = False          # created with Prefer: IdType="ImmutableId": its notifications carry them
    recreate_reason: str | None = None   # to be replaced without a gap (e.g. "immutable-ids"; subscriptions.switch)

    @property
    def live(self) -> bool:
        return self.status in LIVE_SUBSCRIPTION

    @property
    def client_state_digest(self) -> bytes:
        """SHA-256 of the clientState (the same digest the webhook makes of a received one)."""
        if self.client_state:
            return hashlib.sha256(self.client_state.encode()).digest()
        return bytes.fromhex(self.client_state_sha256)

    @classmethod
    def from_doc(cls, doc: dict) -> Subscription:
        status = doc.get("status")
        return cls(
            id=doc["_id"], user_id=doc["user_id"], client_state=doc.get("client_state") or "",  # (before 2026-12)
            client_state_sha256=doc.get("client_state_sha256") or "",
            tenant_id=doc.get("tenant_id"), resource=doc.get("resource") or "",
            expires_at=as_utc(doc.get("expires_at")),
            status=SubscriptionStatus(status) if status in SubscriptionStatus._value2member_map_
            else SubscriptionStatus.ACTIVE,
            rich=bool(doc.get("rich")), created_at=as_utc(doc.get("created_at")),
            last_notification_at=as_utc(doc.get("last_notification_at")), renewed_at=as_utc(doc.get("renewed_at")),
            reauthorized_at=as_utc(doc.get("reauthorized_at")), failures=int(doc.get("failures") or 0),
            last_error=doc.get("last_error"), next_attempt_at=as_utc(doc.get("next_attempt_at")),
            immutable_ids=doc.get("immutable_ids") is True, recreate_reason=doc.get("recreate_reason"),
        )


@dataclass(frozen=True)
class Calendar:
    """One of a user's calendars, with its own delta cursor and window."""

    user_id: str
    calendar_id: str
    name: str = ""
    owner_email: str | None = None
    is_default: bool = False
    is_own: bool = True                 # owned by the user (not shared with them by someone else)
    enabled: bool = True
    enabled_by: str = "default"         # "default" (own on, shared off) or "user" (chosen on the settings page)
    delta_link: str | None = field(default=None, repr=False)
    window_start: datetime | None = None
    window_end: datetime | None = None
    baseline_at: datetime | None = None
    last_sync_at: datetime | None = None
    last_result: str | None = None
    last_error: str | None = None
    purge_pending: bool = False         # turned off: its events are deleted (again) by the next sync
    series_recheck: tuple[str, ...] = ()   # masters the last series check wrote newer than its delta token
    key: str = ""                       # the stored document's id (settings forms name calendars by it)

    @classmethod
    def from_doc(cls, doc: dict) -> Calendar:
        return cls(
            user_id=doc["user_id"], calendar_id=doc["calendar_id"], name=doc.get("name") or "",
            owner_email=doc.get("owner_email"), is_default=bool(doc.get("is_default")),
            is_own=doc.get("is_own", True) is not False, enabled=doc.get("enabled", True) is not False,
            enabled_by=doc.get("enabled_by") or "default", delta_link=doc.get("delta_link"),
            window_start=as_utc(doc.get("window_start")), window_end=as_utc(doc.get("window_end")),
            baseline_at=as_utc(doc.get("baseline_at")), last_sync_at=as_utc(doc.get("last_sync_at")),
            last_result=doc.get("last_result"), last_error=doc.get("last_error"),
            purge_pending=bool(doc.get("purge_pending")), key=str(doc.get("_id", "")),
            series_recheck=tuple(m for m in doc.get("series_recheck") or () if isinstance(m, str)),
        )
