"""Slack: an organisation installs calsync's app (OAuth v2), and its bot DMs each person in Block Kit.

The bot token from ``oauth.v2.access`` is stored encrypted with the token keys, like Graph's token caches.
People are found by their email (``users.lookupByEmail``), their DM opened with ``conversations.open`` and
written with ``chat.postMessage`` (blocks and a plain-text fallback). ``slack_sdk`` makes every call: its
``AsyncWebClient`` on a session kept alive per process (``service.channels.connections``) for messages, its
``WebClient`` for the rare OAuth exchange. A 429's ``Retry-After`` pauses the whole workspace (a Redis key
every worker reads), per Slack's per-method, per-workspace limits. ``token_revoked``, ``account_inactive`` and
``invalid_auth`` disable the workspace; ``users_not_found`` disables the person; each with a status in words.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from service.channels import connections, pauses
from service.channels.errors import Busy, Unavailable
from service.identity import crypto
from service.store import channels as store
from service.store.records import User

log = logging.getLogger(__name__)

BOT_SCOPES = ("chat:write", "im:write", "users:read.email")
PAUSE_KEY = "calsync:slack:pause:{team}"
MAX_WAIT = 10.0            # a shorter pause is waited out in the job; a longer one retries the job later
WORKSPACE_GONE = {"token_revoked": "unavailable: calsync's Slack app was uninstalled or its token revoked",
                  "account_inactive": "unavailable: the Slack workspace or calsync's bot was deactivated",
                  "invalid_auth": "unavailable: Slack no longer accepts calsync's token",
                  "team_access_not_granted": "unavailable: calsync's Slack app has no access to this workspace"}
PERSON_GONE = {"users_not_found": "unavailable: no Slack account with your email in your organisation's workspace",
               "user_not_found": "unavailable: your Slack account was not found",
               "user_disabled": "unavailable: your Slack account is deactivated",
               "cannot_dm_bot": "unavailable: Slack does not let calsync write to you"}


def client(rt, token: str | None = None) -> WebClient:
    return WebClient(token=token, base_url=rt.settings.slack_api_url, ssl=rt.ssl_context,
                     timeout=int(rt.settings.http_timeout))


def send(rt, user: User, message) -> None:
    if message.blocks is None:
        raise Unavailable("no Block Kit form of this message")
    workspace = store.workspace_for_tenant(rt.db, user.tenant_id)
    if workspace is None:
        raise Unavailable("calsync's Slack app is not installed for your organisation")
    if workspace["status"] == store.DISABLED:
        raise Unavailable(workspace["reason"])
    link = store.link(rt.db, store.SLACK, user.id)
    if link and link["status"] == store.DISABLED and link.get("team_id") == workspace["_id"]:
        raise Unavailable(link["reason"])
    token = crypto.decrypt(rt.settings, workspace["bot_token"])
    team = workspace["_id"]
    if not link or link.get("team_id") != team or link["status"] == store.DISABLED or not link.get("dm_channel"):
        link = _open_dm(rt, token, team, user)
    _call(rt, team, user, token, "chat_postMessage", channel=link["dm_channel"], blocks=message.blocks,
          text=message.text, unfurl_links=False, unfurl_media=False)


def _open_dm(rt, token: str, team: str, user: User) -> dict:
    found = _call(rt, team, user, token, "users_lookupByEmail", email=user.email)
    slack_user = found["user"]["id"]
    opened = _call(rt, team, user, token, "conversations_open", users=slack_user)
    fields = {"team_id": team, "slack_user": slack_user, "dm_channel": opened["channel"]["id"]}
    store.save_link(rt.db, store.SLACK, user.id, **fields)
    return fields


def _call(rt, team: str, user: User, token: str, method: str, **arguments):
    """One Web API call (``AsyncWebClient``'s ``method``, on the process's kept-alive session: no TLS handshake
    per call), after any pause the workspace is under; Slack's errors become Busy or Unavailable."""
    async def call(session, _lock):
        web = AsyncWebClient(token=token, base_url=rt.settings.slack_api_url, ssl=rt.ssl_context,
                             timeout=int(rt.settings.http_timeout), session=session)
        return await getattr(web, method)(**arguments)

    waited = 0.0
    while True:
        waited += pauses.wait(rt.redis, PAUSE_KEY.format(team=team), MAX_WAIT - waited, "Slack's rate limit")
        try:
            return connections.run(call, rt.ssl_context, rt.settings.http_timeout)
        except SlackApiError as exc:
            response = exc.response
            if response.status_code != 429:
                _api_error(rt, team, user, response)
            retry_after = pauses.retry_after(response.headers.get("Retry-After"))
            pauses.pause(rt.redis, PAUSE_KEY.format(team=team), retry_after)
            log.info("Slack workspace %s rate limited for %.1f s (%s)", team, retry_after, method)
            if waited + retry_after > MAX_WAIT:
                raise Busy("Slack's rate limit", retry_after) from None
            # Slack did not run a call it answered 429 (the method's tier spent): made again in this job after
            # Retry-After, rather than the job failing and spending one of its few retries on each 429.


def _api_error(rt, team: str, user: User, response) -> None:
    """Slack's error answer to a call (not a 429), as Busy or Unavailable; always raises."""
    error = response.get("error") if isinstance(response.data, dict) else None
    if error in WORKSPACE_GONE:
        store.disable_workspace(rt.db, team, WORKSPACE_GONE[error])
        log.warning("Slack workspace %s disabled: %s", team, error)
        raise Unavailable(WORKSPACE_GONE[error]) from None
    if error in PERSON_GONE:
        store.disable_link(rt.db, store.SLACK, user.id, PERSON_GONE[error], team_id=team)
        raise Unavailable(PERSON_GONE[error]) from None
    if error == "channel_not_found":
        store.forget_link(rt.db, store.SLACK, user.id)
    raise Busy(f"Slack answered {error or response.status_code}") from None


def install_url(rt, state: str, redirect_uri: str) -> str:
    return rt.settings.slack_authorize_url + "?" + urlencode(
        {"client_id": rt.settings.slack_client_id or "", "scope": ",".join(BOT_SCOPES), "state": state,
         "redirect_uri": redirect_uri})


def finish_install(rt, code: str, redirect_uri: str, tenant_id: str | None) -> dict:
    """Redeem the OAuth code; store the workspace with its bot token encrypted. Raises SlackApiError."""
    answer = client(rt).oauth_v2_access(client_id=rt.settings.slack_client_id or "",
                                        client_secret=rt.settings.slack_client_secret or "", code=code,
                                        redirect_uri=redirect_uri)
    granted = set((answer.get("scope") or "").split(","))
    missing = [s for s in BOT_SCOPES if s not in granted]
    if missing:
        raise Unavailable(f"the Slack app was installed without {', '.join(missing)}")
    team = answer["team"]
    store.save_workspace(rt.db, team["id"], tenant_id, team.get("name") or team["id"], answer["bot_user_id"],
                         crypto.encrypt(rt.settings, answer["access_token"]))
    log.info("Slack workspace %s installed for tenant %s", team["id"], tenant_id)
    return {"team_id": team["id"], "team_name": team.get("name")}
