"""What Teams and Slack send back: a card's or a DM's buttons, Slack's OAuth install, and the settings
page's channel section.

- ``POST /channels/teams/messages``: the bot's messaging endpoint. The Bearer token is checked by the Microsoft
  365 Agents SDK's ``JwtTokenValidator`` (RS256 signature against the Bot Framework's keys, audience = our bot's
  app id, the issuer on its allow-list, expiry), then its ``serviceurl`` claim must match the activity's. A
  ``conversationUpdate`` adding the bot to a person's 1:1 chat (the app was installed for them) records that
  conversation, so that the next message goes there without Graph's installation lookups.
- ``POST /channels/slack/interactivity``: checked by ``slack_sdk``'s ``SignatureVerifier`` (v0 HMAC over the
  raw body, 5-minute window); a signature seen before is a replay and refused.
- ``GET /channels/slack/install`` and ``/channels/slack/oauth``: OAuth v2, ``state`` a signed settings token.

Refusals are clear 4xx answers; nothing is changed and nothing logged carries a token or a body.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

import requests
from flask import Blueprint, current_app, jsonify, redirect, request
from jwt import PyJWKClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from service.channels import actions, slack, teams
from service.channels.errors import Unavailable
from service.digest import links
from service.store import channels as store
from service.store import users as users_store
from service.web.csrf import csrf

log = logging.getLogger(__name__)

bp = Blueprint("channels", __name__, url_prefix="/channels")
csrf.exempt(bp)   # each route has its own proof: a Bot Framework token, a Slack signature, a signed link

MAX_BODY = 40 * 1024           # a button press is a few KB; Slack's interactive payloads stay well under this
BOT_ISSUER = "https://api.botframework.com"
REPLAY_KEY = "calsync:slack:seen:{signature}"
REPLAY_SECONDS = 10 * 60       # longer than the verifier's 5-minute window either side


def _rt():
    return current_app.extensions["calsync"]


def _refuse(status: int, reason: str):
    log.info("channel request refused (%d): %s", status, reason)
    return jsonify({"error": reason}), status


# --- Teams ---------------------------------------------------------------------------------------

class ConfiguredKeys:
    """The validator's key source, with the keys' URL from configuration (Bot Framework's in production, the
    local emulator's in development) and our trusted TLS context; the validator does every check."""

    def __init__(self, url: str, ssl_context):
        self.client = PyJWKClient(url, ssl_context=ssl_context, timeout=10)

    async def get_signing_key(self, jwks_uri: str, header: dict):
        return await asyncio.to_thread(self.client.get_signing_key, header["kid"])


def _validator(rt):
    """The Agents SDK's ``JwtTokenValidator`` for our bot (imported on first use: see channels.teams.send)."""
    cached = rt.__dict__.get("_bot_validator")
    if cached is None:
        from microsoft_agents.hosting.core import AgentAuthConfiguration, JwtTokenValidator  # noqa: PLC0415

        configuration = AgentAuthConfiguration(client_id=rt.settings.bot_id, tenant_id=rt.settings.bot_tenant,
                                               issuers=[BOT_ISSUER], validate_issuer=True)
        cached = JwtTokenValidator(configuration)
        cached._jwk_client_manager = ConfiguredKeys(rt.settings.botframework_jwks_url, rt.ssl_context)
        rt.__dict__["_bot_validator"] = cached
    return cached


@bp.post("/teams/messages")
def teams_messages():
    rt = _rt()
    if (request.content_length or 0) > MAX_BODY:
        return _refuse(413, "body too large")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _refuse(401, "a Bot Framework token is required")
    try:
        claims = asyncio.run(_validator(rt).validate_token(token.strip())).claims
    except Exception as exc:   # noqa: BLE001 - any failure of validation is a refusal; its class is logged
        return _refuse(401, f"token refused ({type(exc).__name__})")
    activity = request.get_json(silent=True)
    if not isinstance(activity, dict):
        return _refuse(400, "the body is not a JSON activity")
    if claims.get("serviceurl") and claims["serviceurl"] != activity.get("serviceUrl"):
        return _refuse(401, "the token's serviceurl does not match the activity's")
    sender = (activity.get("from") or {}).get("aadObjectId")
    user = users_store.get(rt.db, sender) if isinstance(sender, str) and len(sender) <= 64 else None
    if user is None:
        return _refuse(403, "unknown person")
    conversation = (activity.get("conversation") or {}).get("id")
    if isinstance(activity.get("serviceUrl"), str) and isinstance(conversation, str):
        teams.remember_service_url(rt, user.id, activity["serviceUrl"], conversation)
    if activity.get("type") == "installationUpdate" and str(activity.get("action", "")).startswith("remove"):
        store.disable_link(rt.db, store.TEAMS, user.id, "unavailable: you removed calsync's app in Teams")
        return "", 200
    if activity.get("type") == "conversationUpdate" and _bot_added(activity):
        teams.remember_installation(rt, user.id, activity)
        return "", 200
    if activity.get("type") != "invoke" or activity.get("name") != "adaptiveCard/action":
        return "", 200      # other conversation updates, messages typed to the bot: nothing to do
    action = ((activity.get("value") or {}).get("action") or {})
    try:
        done = actions.apply(rt.db, user.id, store.TEAMS, action.get("data"))
    except actions.Refused as exc:
        return jsonify(_invoke_answer(400, str(exc))), 200
    return jsonify(_invoke_answer(200, done)), 200


def _bot_added(activity: dict) -> bool:
    """A 1:1 conversation's update whose ``membersAdded`` names the bot (its ``recipient``): the app was installed
    for the person (by calsync through Graph, by an admin's policy, or by the person)."""
    bot = (activity.get("recipient") or {}).get("id")
    added = activity.get("membersAdded")
    return ((activity.get("conversation") or {}).get("conversationType") == "personal" and isinstance(bot, str)
            and isinstance(added, list) and any(isinstance(m, dict) and m.get("id") == bot for m in added))


def _invoke_answer(status: int, text: str) -> dict:
    """The Universal Actions invoke response: a message Teams shows the person."""
    if status == 200:
        return {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text}
    return {"statusCode": status, "type": "application/vnd.microsoft.error",
            "value": {"code": "BadRequest", "message": text}}


# --- Slack ---------------------------------------------------------------------------------------

@bp.post("/slack/interactivity")
def slack_interactivity():
    rt = _rt()
    if not rt.settings.slack_signing_secret:
        return _refuse(404, "Slack is not configured")
    if (request.content_length or 0) > MAX_BODY:
        return _refuse(413, "body too large")
    body = request.get_data(cache=True, as_text=False)
    if len(body) > MAX_BODY:
        return _refuse(413, "body too large")
    text = body.decode("utf-8", errors="replace")
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not SignatureVerifier(rt.settings.slack_signing_secret).is_valid(text, timestamp, signature):
        return _refuse(401, "invalid or stale Slack signature")
    if not rt.redis.set(REPLAY_KEY.format(signature=signature[:80]), "1", nx=True, ex=REPLAY_SECONDS):
        return _refuse(409, "this request was seen before")
    try:
        payload = json.loads(request.form.get("payload", ""))
    except ValueError:
        return _refuse(400, "the payload is not JSON")
    if not isinstance(payload, dict) or payload.get("type") != "block_actions" or not payload.get("actions"):
        return _refuse(400, "not a block_actions payload")
    team, slack_user = (payload.get("team") or {}).get("id"), (payload.get("user") or {}).get("id")
    user_id = store.user_for_slack(rt.db, team, slack_user) if isinstance(team, str) and isinstance(
        slack_user, str) else None
    if user_id is None:
        return _refuse(403, "unknown person")
    try:
        value = json.loads((payload["actions"][0] or {}).get("value") or "")
        done = actions.apply(rt.db, user_id, store.SLACK, value)
    except (ValueError, TypeError, AttributeError) as exc:
        return _refuse(400, str(exc) if isinstance(exc, actions.Refused) else "unknown button")
    _answer_slack(rt, payload.get("response_url"), done)
    return jsonify({"text": done, "response_type": "ephemeral"}), 200


def _answer_slack(rt, response_url: object, text: str) -> None:
    """Tell the person what their press did: Slack ignores a block_actions answer's body and shows what the app
    posts to the payload's ``response_url`` (only ever a Slack host: the API's own or a subdomain of it)."""
    if not isinstance(response_url, str) or len(response_url) > 500:
        return
    url, api = urlsplit(response_url), urlsplit(rt.settings.slack_api_url)
    if url.scheme != "https" or not url.hostname or not (
            url.hostname == api.hostname or url.hostname.endswith("." + (api.hostname or "-"))):
        log.info("a Slack press named a response_url off Slack's hosts; not answered")
        return
    try:
        rt.http.post(response_url, json={"text": text, "response_type": "ephemeral", "replace_original": False},
                     timeout=rt.settings.http_timeout)
    except requests.RequestException as exc:   # the press is done; only its confirmation is lost
        log.info("could not answer a Slack press (%s)", type(exc).__name__)


def _install_redirect(rt) -> str:
    return f"{rt.settings.public_url.rstrip('/')}/channels/slack/oauth"


@bp.get("/slack/install")
def slack_install():
    """Start Slack's OAuth v2 for the person's organisation (the settings link's signed token names them)."""
    rt = _rt()
    user_id = links.read_settings_token(rt.settings, request.args.get("t"))
    if user_id is None or not rt.settings.slack_client_id:
        return _refuse(403, "open this from your settings page")
    return redirect(slack.install_url(rt, links.settings_token(rt.settings, user_id), _install_redirect(rt)), 302)


@bp.get("/slack/oauth")
def slack_oauth():
    rt = _rt()
    user_id = links.read_settings_token(rt.settings, request.args.get("state"))
    user = users_store.get(rt.db, user_id) if user_id else None
    if user is None or not request.args.get("code"):
        return _refuse(400, "the Slack sign-in expired or was not for calsync: start again from settings")
    try:
        slack.finish_install(rt, request.args["code"], _install_redirect(rt), user.tenant_id)
    except SlackApiError as exc:
        return _refuse(400, f"Slack refused the installation ({exc.response.get('error')})")
    except Unavailable as exc:
        return _refuse(400, exc.reason)
    return redirect(links.settings_url(rt.settings, user.id) + "#channels", 303)


# --- the settings page's section ---------------------------------------------------------------

@bp.post("/settings")
def channel_settings():
    """The settings page's channel section (authorised by its signed link token, as the page's other forms)."""
    rt = _rt()
    token = request.form.get("t")
    user_id = links.read_settings_token(rt.settings, token)
    if user_id is None:
        return _refuse(403, "this form expired: open the settings link again")
    chosen = {kind: request.form.getlist(kind) for kind in store.KINDS}
    cleaned = store.clean_choice({k: v for k, v in chosen.items() if v})
    if cleaned is None:
        return _refuse(400, "choose at least one known channel for each kind of message")
    store.set_choice(rt.db, user_id, cleaned)
    log.info("channels changed on the settings page for user %s", user_id)
    return redirect(f"/digest/settings?t={token}&saved=channels#channels", 303)
