"""Finishing a sign-in: redeem the code (PKCE), verify the id token, read /me, and hand the verified
connection to ``service.connections.lifecycle``."""

from __future__ import annotations

import logging

import msal
import requests

from service.config import Settings
from service.connections.lifecycle import Connected, Connections
from service.graph import GraphClient, GraphError
from service.identity import idtoken
from service.identity.msal_app import build_app, sign_in_scopes

log = logging.getLogger(__name__)

RETRY_CONNECT = "Please start again from the connect page."


class SignInFailed(Exception):  # noqa: N818
    """The sign-in cannot complete; ``status`` and ``title`` drive the friendly page, ``detail`` is safe to show."""

    def __init__(self, status: int, title: str, detail: str):
        super().__init__(f"{status} {title}")
        self.status, self.title, self.detail = status, title, detail


def complete_sign_in(connections: Connections, http: requests.Session, id_tokens: idtoken.IdTokens, flow: dict,
                     auth_response: dict[str, str], time_zone: str | None) -> Connected:
    """Redeem the code, verify the id token, read /me, store tokens and the user, queue the first sync."""
    settings = connections.settings
    cache = msal.SerializableTokenCache()
    app = build_app(settings, http, cache)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, auth_response, scopes=list(sign_in_scopes(settings)))
    except (ValueError, RuntimeError) as exc:  # state/nonce mismatch, scope change: MSAL raises these
        log.warning("sign-in rejected by MSAL: %s", type(exc).__name__)
        raise SignInFailed(400, "Sign-in could not be verified", RETRY_CONNECT) from None
    if "error" in result:
        log.warning("sign-in: the identity platform refused the code (%s)", result.get("error"))
        raise SignInFailed(400, "Sign-in did not complete",
                           "Microsoft did not accept this sign-in (it may have expired or been used already).")
    try:
        claims = id_tokens.validate(result.get("id_token"), flow["nonce"])
    except idtoken.IdTokenInvalid as exc:
        log.warning("sign-in: id token rejected: %s", exc)
        raise SignInFailed(400, "Sign-in could not be verified", RETRY_CONNECT) from None
    me = _read_me(settings, http, result["access_token"])
    if me.get("id") != claims["oid"]:
        log.warning("sign-in: /me does not match the id token's user")
        raise SignInFailed(400, "Sign-in could not be verified", RETRY_CONNECT)
    return connections.connect(me["id"], me, str(claims["tid"]), _home_account_id(app, claims), cache, time_zone)


def _read_me(settings: Settings, http: requests.Session, access_token: str) -> dict:
    graph = GraphClient(http, settings.graph_url, token=lambda force_refresh=False: access_token,
                        timeout=settings.http_timeout)
    try:
        me = graph.get_json("/me")
    except GraphError as exc:
        log.warning("sign-in: reading /me failed (%s %s)", exc.status, exc.code)
        raise SignInFailed(502, "Microsoft 365 did not answer",
                           "We could not read your profile. Please try again in a minute.") from None
    if not isinstance(me, dict) or not isinstance(me.get("id"), str):
        raise SignInFailed(502, "Microsoft 365 did not answer", "Your profile could not be read.")
    return me


def _home_account_id(app: msal.ClientApplication, claims: dict) -> str:
    for account in app.get_accounts():
        if account.get("local_account_id") == claims["oid"]:
            return account["home_account_id"]
    return f"{claims['oid']}.{claims['tid']}"


def verify_admin(settings: Settings, http: requests.Session, id_tokens: idtoken.IdTokens, flow: dict,
                 auth_response: dict[str, str]) -> dict:
    """Redeem an admin's sign-in and return the verified id token's claims (``tid``, ``wids``...); nothing is
    stored: signing in as an admin does not connect the admin's own calendar."""
    app = build_app(settings, http, msal.SerializableTokenCache())
    try:
        result = app.acquire_token_by_auth_code_flow(flow, auth_response, scopes=list(sign_in_scopes(settings)))
    except (ValueError, RuntimeError):
        raise SignInFailed(400, "Sign-in could not be verified", "Please start again from the admin page.") from None
    if "error" in result:
        raise SignInFailed(400, "Sign-in did not complete", "Microsoft did not accept this sign-in.")
    try:
        return id_tokens.validate(result.get("id_token"), flow["nonce"])
    except idtoken.IdTokenInvalid as exc:
        log.warning("admin sign-in: id token rejected: %s", exc)
        raise SignInFailed(400, "Sign-in could not be verified", "Please start again from the admin page.") from None
