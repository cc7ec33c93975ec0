"""Access tokens for workers: one encrypted MSAL cache per user, refreshed under a per-user Redis lock.

``Tokens.access_token(user_id)`` is the only way jobs get a Graph token. It loads the user's cache
*after* taking ``calsync:lock:token:{user_id}``, so when several workers refresh at once the later ones
see the refresh token the first one already rotated in, and it writes the cache back only when MSAL
changed it. A grant that is gone (``invalid_grant``, ``interaction_required``…) or a cache nobody can
decrypt moves the user to ``needs_reconnect`` once, queues one reconnect mail, and raises
``ReconnectRequired``; later calls raise at once without touching MSAL, so a broken user never becomes a
crash loop.

A process keeps each user's last access token (``Tokens.graph``: one ``TokenMemo`` per user, the most
recent ``MEMO_USERS``) for at most ``MEMO_SECONDS``, so a worker syncing a busy user every second does not
reload, decrypt and search the MSAL cache (two MongoDB reads, two Redis calls, MSAL's own work) for every
job. After ``MEMO_SECONDS`` the user's connection and cache are read again, as before; a 401 refreshes at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msal
import requests
from pymongo.database import Database
from redis import Redis

from service import locks, outbox, queues
from service.config import Settings
from service.graph import GraphClient
from service.identity import crypto
from service.identity.apptokens import AppConsentMissing, AppTokens
from service.identity.msal_app import RECONNECT_ERRORS, SCOPES, build_app
from service.mailbox import MailboxGate
from service.store import tokens as token_store
from service.store import users
from service.store.records import APP_SOURCE, USER_SOURCE, ConnectionStatus

log = logging.getLogger(__name__)

LOCK_KEY = "calsync:lock:token:{user_id}"
LOCK_SECONDS = 30          # a refresh is one HTTP call with a 10 s timeout; a dead holder frees it after this
LOCK_WAIT_SECONDS = 20
EARLY_REFRESH_SECONDS = 300  # the memo treats a token as stale this long before it expires
MEMO_SECONDS = 300           # and reads the user's connection and cache again after this long at most
APP_TOKEN_MEMO_SECONDS = 300  # MSAL keeps the tenant's token; the memo only saves the lookup
MEMO_USERS = 2_000           # users whose token a process keeps (an access token is about 2 KB)


class ReconnectRequired(Exception):  # noqa: N818 - named by the cross-module contract
    """The user must sign in again; the connection is (now) marked needs_reconnect."""

    def __init__(self, user_id: str, reason: str):
        super().__init__(f"user must reconnect ({reason})")
        self.user_id = user_id
        self.reason = reason


class ScopeNotGranted(Exception):  # noqa: N818
    """The user has not consented to an optional permission (they connected before it was asked for)."""


class TokenUnavailable(Exception):  # noqa: N818
    """A transient failure (identity platform down, lock busy): retry the job later."""


@dataclass
class Tokens:
    """Graph access tokens for connected users, from their encrypted MSAL caches."""

    settings: Settings
    db: Database
    redis: Redis
    http: requests.Session
    app_tokens: AppTokens | None = None    # tenant-wide mailboxes (``token_source: "app"``) read with these

    def __post_init__(self) -> None:
        self.mailboxes = MailboxGate(self.redis)   # Outlook's per-mailbox limits, across every worker
        self._memos: OrderedDict[str, TokenMemo] = OrderedDict()
        self._memos_lock = threading.Lock()

    def access_token(self, user_id: str, force_refresh: bool = False) -> str:
        """A valid Graph access token for ``user_id``; raises ReconnectRequired or TokenUnavailable."""
        return self._acquire(user_id, force_refresh)["access_token"]

    def graph(self, user_id: str, source: str | None = None) -> GraphClient:
        """A GraphClient for ``user_id``'s mailbox (token fetched lazily, reused until close to expiry): with the
        user's own token, or with their tenant's application token when they are synced tenant-wide. One code
        path, two token sources: sync, subscriptions and the mailbox checks all come through here."""
        source = source or users.token_source(self.db, user_id)
        return GraphClient(self.http, self.settings.graph_url, token=self._memo(user_id, source),
                           timeout=self.settings.http_timeout, gate=self.mailboxes, mailbox=user_id)

    def tenant_token(self, tenant_id: str) -> Callable[..., str]:
        """The tenant's application token, looked up once for the GraphClients of its mailboxes that the caller has
        just read as enrolled tenant-wide and connected (a chunk of enrolments: no read of each user for it)."""
        kept: list[str] = []

        def token(force_refresh: bool = False) -> str:
            if force_refresh or not kept:
                kept[:] = [self._app_token("", tenant_id)["access_token"]]
            return kept[0]

        return token

    def graph_with_token(self, user_id: str, token: Callable[..., str]) -> GraphClient:
        """A GraphClient for ``user_id``'s mailbox with a given token provider (``tenant_token``); ``user_id`` empty:
        for requests of no one mailbox (a ``$batch``, whose requests name theirs)."""
        return GraphClient(self.http, self.settings.graph_url, token=token, timeout=self.settings.http_timeout,
                           gate=self.mailboxes, mailbox=user_id)

    def forget(self, user_id: str) -> None:
        """Drop this process's memos of the user's tokens (their token source changed)."""
        with self._memos_lock:
            for source in (USER_SOURCE, APP_SOURCE):
                self._memos.pop(f"{source}:{user_id}", None)

    def _memo(self, user_id: str, source: str = USER_SOURCE) -> TokenMemo:
        """This process's token memo for the user and source (the most recently used ``MEMO_USERS`` are kept)."""
        key = f"{source}:{user_id}"
        with self._memos_lock:
            memo = self._memos.pop(key, None) or TokenMemo(self, user_id, source=source)
            self._memos[key] = memo
            while len(self._memos) > MEMO_USERS:
                self._memos.popitem(last=False)
        return memo

    @contextmanager
    def locked(self, user_id: str) -> Iterator[None]:
        """Hold the user's token lock (a refresh, storing a new cache, deleting it); TokenUnavailable if busy."""
        try:
            with locks.held(self.redis, LOCK_KEY.format(user_id=user_id), LOCK_SECONDS, wait=LOCK_WAIT_SECONDS):
                yield
        except locks.LockBusy:
            raise TokenUnavailable("token lock busy") from None

    def graph_with(self, user_id: str, scopes: tuple[str, ...]) -> GraphClient:
        """A GraphClient acting as ``user_id`` with a token for ``scopes`` (an optional permission such as
        MailboxSettings.Read); ScopeNotGranted when the user never consented to them (the connection stays).
        Mailboxes synced with the tenant's application token have no delegated grant to ask: ScopeNotGranted."""
        if users.token_source(self.db, user_id) == APP_SOURCE:
            raise ScopeNotGranted(user_id, "read with the tenant's application token")

        def token(force_refresh: bool = False) -> str:
            return self._acquire(user_id, force_refresh, scopes=scopes)["access_token"]
        return GraphClient(self.http, self.settings.graph_url, token=token, timeout=self.settings.http_timeout,
                           gate=self.mailboxes, mailbox=user_id)

    def _acquire(self, user_id: str, force_refresh: bool, source: str = USER_SOURCE,
                 scopes: tuple[str, ...] = SCOPES) -> dict:
        user = users.get(self.db, user_id)
        if user is None:
            raise ReconnectRequired(user_id, "unknown user")
        if not user.connected:
            raise ReconnectRequired(user_id, user.connection.reason or user.connection.status or "not connected")
        if source == APP_SOURCE:
            return self._app_token(user.id, user.tenant_id)
        with self.locked(user_id):
            cache = self._load_cache(user_id)  # read under the lock: another worker may just have refreshed
            app = build_app(self.settings, self.http, cache)
            account = _account(app, user.connection.home_account_id, user_id)
            if account is None:
                self._needs_reconnect(user_id, "no_account")
            result = app.acquire_token_silent_with_error(list(scopes), account, force_refresh=force_refresh)
            self.save_cache(user_id, cache)
        if result and "access_token" in result:
            return result
        error = (result or {}).get("error") or "no_refresh_token"
        if scopes != SCOPES and error in RECONNECT_ERRORS:
            raise ScopeNotGranted(user_id, error)   # an optional permission: the calendar connection is fine
        if result is None or error in RECONNECT_ERRORS:
            self._needs_reconnect(user_id, error)
        log.warning("token refresh failed for user %s: %s", user_id, error)
        raise TokenUnavailable(error)

    def _app_token(self, user_id: str, tenant_id: str | None) -> dict:
        """The tenant's application token (MSAL keeps it per process); a tenant whose consent is gone moves
        every tenant-wide mailbox to needs_admin once and mails its admin once, never retried in a loop."""
        if self.app_tokens is None or not tenant_id:
            raise TokenUnavailable("no application tokens in this process")
        try:
            # Not require("Calendars.Read"): under Exchange's RBAC for Applications the token carries no Calendars.Read
            # role at all; Exchange answers per mailbox (ErrorAccessDenied), which the scope checker reports.
            token = self.app_tokens.token(tenant_id)
        except AppConsentMissing as exc:
            consent_lost(self.db, self.redis, tenant_id, exc.reason)
            raise ReconnectRequired(user_id, "admin_consent_missing") from None
        return {"access_token": token, "expires_in": APP_TOKEN_MEMO_SECONDS + EARLY_REFRESH_SECONDS}

    def _load_cache(self, user_id: str) -> msal.SerializableTokenCache:
        """The user's decrypted cache; an unreadable one means the user must reconnect (logged, not raised raw)."""
        cache = msal.SerializableTokenCache()
        blob = token_store.get_blob(self.db, user_id)
        if blob is None:
            self._needs_reconnect(user_id, "no_token_cache")
        try:
            plaintext = crypto.decrypt(self.settings, blob)
            json.loads(plaintext)
            cache.deserialize(plaintext)
        except (crypto.CacheUnreadable, ValueError):
            log.error("token cache for user %s is unreadable (tampered, or its key is no longer in "
                      "CALSYNC_TOKEN_KEYS); marking the connection needs_reconnect", user_id)
            self._needs_reconnect(user_id, "token_cache_unreadable")
        return cache

    def save_cache(self, user_id: str, cache: msal.SerializableTokenCache) -> bool:
        """Encrypt and store the cache if MSAL changed it; True if written."""
        if not cache.has_state_changed:
            return False
        token_store.save_blob(self.db, user_id, crypto.encrypt(self.settings, cache.serialize()))
        return True

    def _needs_reconnect(self, user_id: str, reason: str):
        """Mark the user (mail on the transition) and raise ReconnectRequired."""
        require_reconnect(self.db, self.redis, user_id, reason)
        raise ReconnectRequired(user_id, reason)


class TokenMemo:
    """Token provider for a user's GraphClients: keeps the last token so each request does not reload the cache."""

    def __init__(self, tokens: Tokens, user_id: str, clock: Callable[[], float] = time.monotonic,
                 source: str = USER_SOURCE):
        self.tokens, self.user_id, self.clock, self.source = tokens, user_id, clock, source
        self._token: str | None = None
        self._fresh_until = 0.0

    def __call__(self, force_refresh: bool = False) -> str:
        if force_refresh or self._token is None or self.clock() >= self._fresh_until:
            result = self.tokens._acquire(self.user_id, force_refresh, self.source)
            self._token = result["access_token"]
            lifetime = int(result.get("expires_in") or 0)
            self._fresh_until = self.clock() + min(max(lifetime - EARLY_REFRESH_SECONDS, 0), MEMO_SECONDS)
        return self._token


def _account(app: msal.ClientApplication, home_account_id: str | None, user_id: str) -> dict | None:
    accounts = app.get_accounts()
    for account in accounts:
        if home_account_id and account.get("home_account_id") == home_account_id:
            return account
    return next((a for a in accounts if a.get("local_account_id") == user_id), None)


def consent_lost(db: Database, redis: Redis, tenant_id: str, reason: str) -> int:
    """The tenant's application consent is gone: its tenant-wide mailboxes wait for the admin (one status
    change each), and one job mails the admin (it claims the mail on the tenant record). Returns how many moved."""
    moved = users.mark_tenant_needs_admin(db, tenant_id, reason)
    for user_id in moved:
        outbox.connection_status_changed(db, redis, user_id, ConnectionStatus.NEEDS_ADMIN, reason,
                                         ConnectionStatus.CONNECTED)
    if moved:
        log.warning("tenant %s: application consent missing (%s); %d mailbox(es) wait for its admin", tenant_id,
                    reason, len(moved))
        queues.enqueue(redis, queues.MAINTENANCE, queues.TENANT_CONSENT_LOST, tenant_id, retry=None)
    return len(moved)


def require_reconnect(db: Database, redis: Redis, user_id: str, reason: str) -> bool:
    """Move a connected user to needs_reconnect and queue their reconnect mail; True if this call did it.

    Also for callers that learn the grant is unusable some other way (Graph answers 401 to a fresh token).
    A tenant-wide mailbox has no grant of its own: its tenant's consent is what failed.
    """
    user = users.get(db, user_id)
    if user is not None and user.tenant_wide and user.tenant_id:
        return consent_lost(db, redis, user.tenant_id, reason) > 0
    if not users.mark_needs_reconnect(db, user_id, reason):
        return False
    log.warning("user %s must reconnect their calendar (%s)", user_id, reason)
    outbox.connection_status_changed(db, redis, user_id, ConnectionStatus.NEEDS_RECONNECT, reason,
                                     ConnectionStatus.CONNECTED)
    queues.enqueue(redis, queues.MAINTENANCE, queues.SEND_RECONNECT_MAIL, user_id)
    return True
