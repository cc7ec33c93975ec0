"""Connection lifecycle outside HTTP: finish a sign-in, disconnect, and kick off the first sync."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msal

from service.auth import crypto, idtoken
from service.auth.msal_app import SCOPES, build_app
from service.auth.tokens import token_lock
from service.digest import plan as digest_plan
from service.runtime import Runtime
from service.store import tokens as token_store
from service.store import users

log = logging.getLogger(__name__)


class SignInFailed(Exception):  # noqa: N818
    """The sign-in cannot complete; ``status`` and ``title`` drive the friendly page, ``detail`` is safe to show."""

    def __init__(self, status: int, title: str, detail: str):
        super().__init__(f"{status} {title}")
        self.status, self.title, self.detail = status, title, detail


@dataclass
class Connected:
    user: dict
    first_time: bool


def complete_sign_in(rt: Runtime, flow: dict, auth_response: dict[str, str], time_zone: str | None) -> Connected:
    """Redeem the code (PKCE), verify the id token, read /me, store tokens and the user, queue the first sync."""
    cache = msal.SerializableTokenCache()
    app = build_app(rt, cache)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, auth_response, scopes=list(SCOPES))
    except (ValueError, RuntimeError) as exc:  # state/nonce mismatch, scope change: MSAL raises these
        log.warning("sign-in rejected by MSAL: %s", type(exc).__name__)
        raise SignInFailed(400, "Sign-in could not be verified", "Please start again from the connect page.") from None
    if "error" in result:
        log.warning("sign-in: the identity platform refused the code (%s)", result.get("error"))
        raise SignInFailed(400, "Sign-in did not complete",
                           "Microsoft did not accept this sign-in (it may have expired or been used already).")
    try:
        claims = idtoken.validate(rt, result.get("id_token"), flow["nonce"])
    except idtoken.IdTokenInvalid as exc:
        log.warning("sign-in: id token rejected: %s", exc)
        raise SignInFailed(400, "Sign-in could not be verified", "Please start again from the connect page.") from None
    me = _read_me(rt, result["access_token"])
    if me.get("id") != claims["oid"]:
        log.warning("sign-in: /me does not match the id token's user")
        raise SignInFailed(400, "Sign-in could not be verified", "Please start again from the connect page.")
    return _store_connection(rt, app, cache, claims, me, time_zone)


def _read_me(rt: Runtime, access_token: str) -> dict:
    from service.graph import GraphClient, GraphError

    graph = GraphClient(rt.http, rt.settings.graph_url, token=lambda force_refresh=False: access_token,
                        timeout=rt.settings.http_timeout)
    try:
        me = graph.get_json("/me")
    except GraphError as exc:
        log.warning("sign-in: reading /me failed (%s %s)", exc.status, exc.code)
        raise SignInFailed(502, "Microsoft 365 did not answer",
                           "We could not read your profile. Please try again in a minute.") from None
    if not isinstance(me, dict) or not isinstance(me.get("id"), str):
        raise SignInFailed(502, "Microsoft 365 did not answer", "Your profile could not be read.")
    return me


def _store_connection(rt, app, cache, claims: dict, me: dict, time_zone: str | None) -> Connected:
    user_id, tenant_id = me["id"], str(claims["tid"])
    home_account_id = _home_account_id(app, claims)
    first_time = users.get(rt.db, user_id) is None
    with token_lock(rt, user_id):  # tokens first: a connected user always has a cache
        token_store.save_blob(rt.db, user_id, crypto.encrypt(rt.settings, cache.serialize()))
        user = users.upsert_from_graph(rt.db, me, tenant_id, home_account_id)
    zone = valid_time_zone(time_zone)
    if zone and users.set_time_zone_if_unset(rt.db, user_id, zone):
        user = users.get(rt.db, user_id)
    digest_plan.reschedule(rt.db, user_id, rt.settings.digest_default_time)
    log.info("user %s connected their calendar (%s)", user_id, "new" if first_time else "reconnect")
    start_syncing(rt, user_id)
    return Connected(user, first_time)


def _home_account_id(app: msal.ClientApplication, claims: dict) -> str:
    for account in app.get_accounts():
        if account.get("local_account_id") == claims["oid"]:
            return account["home_account_id"]
    return f"{claims['oid']}.{claims['tid']}"


def valid_time_zone(name: str | None) -> str | None:
    """An IANA zone name the browser reported, if it is one we know; anything else is ignored."""
    if not name or not isinstance(name, str) or len(name) > 64 or ".." in name or name.startswith("/"):
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def start_syncing(rt: Runtime, user_id: str) -> None:
    """Ask for the initial backfill and the Graph subscription (both idempotent downstream)."""
    from service.workers.jobs import request_sync
    from service.workers.queues import SUBSCRIPTIONS, enqueue

    users.mark_subscription_missing(rt.db, user_id)  # until ensure_subscription has made one
    enqueue(rt.redis, SUBSCRIPTIONS, "service.subscriptions.jobs.ensure_subscription", user_id)
    request_sync(rt, user_id, "connect")


def disconnect(rt: Runtime, user_id: str, purge: bool) -> dict:
    """Delete the Graph subscription, then the tokens; keep or purge the stored events. Returns what was done."""
    done = {"subscription_deleted": _delete_subscription(rt, user_id)}
    with token_lock(rt, user_id):  # a refresh in flight must not write the cache back after we delete it
        users.set_connection_status(rt.db, user_id, users.DISCONNECTED, reason="disconnected by the user")
        done["tokens_deleted"] = token_store.delete(rt.db, user_id)
    if purge:
        done.update(users.purge_calendar_data(rt.db, user_id))
    log.info("user %s disconnected (purge=%s)", user_id, purge)
    return done


def _delete_subscription(rt: Runtime, user_id: str) -> bool:
    from service.subscriptions.lifecycle import delete_for_user

    try:
        delete_for_user(rt, user_id)
    except Exception as exc:  # noqa: BLE001 - the user's disconnect must succeed; Graph drops the subscription
        # by itself within days, and without tokens nothing renews it.
        log.warning("could not delete the Graph subscription of user %s (%s)", user_id, type(exc).__name__)
        return False
    return True
