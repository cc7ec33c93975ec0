"""Slack's Web API under /slack/api/<method>, its OAuth authorize page under /slack/oauth/v2/authorize, and
the controls under /_emulator/slack. Answers are Slack's: HTTP 200 with ``{"ok": false, "error": ...}`` for
errors, 429 with Retry-After for rate limits."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

from flask import Blueprint, current_app, jsonify, redirect, request

from emulator.errors import error_response
from emulator.slack.state import (
    MAX_ACTIONS_ELEMENTS,
    MAX_BLOCKS,
    MAX_BUTTON_VALUE,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
)


def _slack():
    return current_app.config["EMULATOR"].slack


def _fail(error: str, status: int = 200, **extra):
    response = jsonify({"ok": False, "error": error, **extra})
    response.status_code = status
    return response


def _args() -> dict:
    """The method's arguments: "as GET querystring parameters, POST parameters presented as
    application/x-www-form-urlencoded, or a mix" (Slack's Web API docs), or a JSON body."""
    if request.is_json:
        body = request.get_json(silent=True)
        return body if isinstance(body, dict) else {}
    return {**request.args.to_dict(), **request.form.to_dict()}


def _team_of_token(args: dict) -> tuple[str | None, str | None]:
    """(team id, error) for the request's bot token (Authorization: Bearer, or the ``token`` argument)."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else args.get("token")
    if not token:
        return None, "not_authed"
    found = _slack().tokens.get(token)
    if found is None:
        return None, "invalid_auth"
    if found["revoked"]:
        return None, "token_revoked"
    if _slack().teams[found["team_id"]]["status"] != "active":
        return None, "account_inactive"
    return found["team_id"], None


def blocks_problem(blocks: object) -> str | None:
    """Why Slack would refuse these blocks (``invalid_blocks``), or None."""
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        return f"no more than {MAX_BLOCKS} items allowed"
    action_ids: set[str] = set()
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "section":
            text = (block.get("text") or {}).get("text", "")
            if not isinstance(text, str) or not 1 <= len(text) <= MAX_SECTION_TEXT:
                return f"section text must be 1 to {MAX_SECTION_TEXT} characters"
        elif kind == "header":
            text = (block.get("text") or {}).get("text", "")
            if (block.get("text") or {}).get("type") != "plain_text" or not 1 <= len(text) <= MAX_HEADER_TEXT:
                return f"header text must be plain_text of 1 to {MAX_HEADER_TEXT} characters"
        elif kind == "actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= MAX_ACTIONS_ELEMENTS:
                return f"actions need 1 to {MAX_ACTIONS_ELEMENTS} elements"
            for element in elements:
                if len(element.get("value", "")) > MAX_BUTTON_VALUE or element.get("action_id") in action_ids:
                    return "button value too long or action_id repeated"
                action_ids.add(element.get("action_id"))
        elif kind != "context":
            return f"unsupported block type {kind!r}"
    return None


def create_slack_blueprint() -> Blueprint:
    bp = Blueprint("slack", __name__, url_prefix="/slack")

    @bp.get("/oauth/v2/authorize")
    def authorize():
        """Slack's consent screen, accepted at once for the workspace the control chose (or the only one)."""
        slack = _slack()
        if request.args.get("client_id") != slack.client_id or not slack.teams:
            return error_response(400, "invalid_client_id", "Unknown client_id or no workspace.")
        team = request.args.get("team") or next(iter(slack.teams))
        code = slack.issue_code(team, request.args.get("redirect_uri"), request.args.get("scope", ""))
        target = request.args.get("redirect_uri") or "/"
        return redirect(target + "?" + urlencode({"code": code, "state": request.args.get("state", "")}), 302)

    @bp.route("/api/<method>", methods=["GET", "POST"])
    def web_api(method: str):
        args = _args()
        if method == "oauth.v2.access":
            return _oauth_access(args)
        team, error = _team_of_token(args)
        if error:
            return _fail(error)
        wait = _slack().admit(team, method, args.get("channel"))
        if wait is not None:
            response = _fail("ratelimited", 429)
            response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            return response
        handler = METHODS.get(method)
        return handler(team, args) if handler else _fail("unknown_method")

    @bp.post("/hooks/<hook>")
    def response_url(hook: str):
        """A press's ``response_url``: the app's answer shown to the person (ephemeral unless it says not)."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("text"):
            return "no_text", 400
        _slack().responses.append({"hook": hook, **body})
        return "ok", 200

    return bp


def _oauth_access(args: dict):
    slack = _slack()
    basic = request.authorization
    client_id = args.get("client_id") or (basic.username if basic else None)
    secret = args.get("client_secret") or (basic.password if basic else None)
    if client_id != slack.client_id or not hmac.compare_digest(str(secret or ""), slack.client_secret):
        return _fail("invalid_client_id")
    grant = slack.redeem(str(args.get("code", "")), args.get("redirect_uri"))
    if grant is None:
        return _fail("invalid_code")
    team = slack.teams[grant["team_id"]]
    return jsonify({"ok": True, "access_token": grant["token"], "token_type": "bot", "scope": grant["scope"],
                    "bot_user_id": "UBOT" + team["id"][1:7], "app_id": "A0CALSYNC",
                    "team": {"id": team["id"], "name": team["name"]}, "enterprise": None,
                    "authed_user": {"id": next(iter(team["members"]), None)}, "is_enterprise_install": False})


def _lookup_by_email(team_id: str, args: dict):
    email = str(args.get("email", "")).lower()
    if not email:
        return _fail("invalid_arguments")
    member = next((m for m in _slack().teams[team_id]["members"].values() if m["email"] == email and
                   not m["deleted"]), None)
    if member is None:
        return _fail("users_not_found")
    return jsonify({"ok": True, "user": {"id": member["id"], "team_id": team_id, "name": email.split("@")[0],
                                         "deleted": False, "profile": {"email": member["email"]}}})


def _open(team_id: str, args: dict):
    users = str(args.get("users", ""))
    member = _slack().teams[team_id]["members"].get(users)
    if member is None:
        return _fail("user_not_found")
    if member["deleted"]:
        return _fail("user_disabled")
    return jsonify({"ok": True, "channel": {"id": _slack().dm(team_id, users)}})


def _post_message(team_id: str, args: dict):
    channel = args.get("channel")
    if not isinstance(channel, str) or not _slack().has_dm(team_id, channel):
        return _fail("channel_not_found")
    blocks = args.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return _fail("invalid_blocks_format")
    text = args.get("text")
    if blocks is not None:
        problem = blocks_problem(blocks)
        if problem:
            return _fail("invalid_blocks", errors=[problem])
    elif not text:
        return _fail("no_text")
    ts = _slack().post(team_id, channel, text, blocks)
    answer = {"ok": True, "channel": channel, "ts": ts, "message": {"text": text, "ts": ts}}
    if blocks is not None and not text:
        answer["warning"] = "missing_text_or_fallback_or_attachments"
    return jsonify(answer)


METHODS = {"users.lookupByEmail": _lookup_by_email, "conversations.open": _open, "chat.postMessage": _post_message}


def sign(secret: str, timestamp: str, body: str) -> str:
    """Slack's v0 request signature."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def create_slack_control_blueprint() -> Blueprint:
    bp = Blueprint("slack_control", __name__, url_prefix="/_emulator/slack")

    @bp.post("/workspaces")
    def add_workspace():
        data = request.get_json(silent=True) or {}
        return jsonify(_slack().add_team(str(data.get("name", "Contoso")), list(data.get("emails", []))))

    @bp.post("/config")
    def configure():
        data = request.get_json(silent=True) or {}
        slack = _slack()
        slack.interactivity_url = data.get("interactivity_url", slack.interactivity_url)
        if "rate_scale" in data:
            slack.set_rate_scale(float(data["rate_scale"]))
        return jsonify({"client_id": slack.client_id, "client_secret": slack.client_secret,
                        "signing_secret": slack.signing_secret})

    @bp.post("/workspaces/<team_id>/<change>")
    def change_workspace(team_id: str, change: str):
        slack = _slack()
        if change == "revoke":
            for token in slack.tokens.values():
                if token["team_id"] == team_id:
                    token["revoked"] = True
        elif change == "deactivate":
            slack.teams[team_id]["status"] = "inactive"
        elif change == "remove-member":
            email = (request.get_json(silent=True) or {}).get("email", "").lower()
            for member in slack.teams[team_id]["members"].values():
                if member["email"] == email:
                    member["deleted"] = True
        return "", 204

    @bp.get("/messages")
    def messages():
        return jsonify({"value": list(_slack().messages)})

    @bp.get("/responses")
    def responses():
        return jsonify({"value": list(_slack().responses)})

    @bp.post("/press")
    def press():
        """A person presses a button in a DM: Slack POSTs a signed ``block_actions`` payload (form-encoded)."""
        data = request.get_json(silent=True) or {}
        slack = _slack()
        message = next((m for m in slack.messages if m["ts"] == data.get("ts")), None)
        if message is None or not slack.interactivity_url:
            return error_response(400, "InvalidRequest", "Unknown message, or no interactivity URL set.")
        element = next((e for b in message["blocks"] or [] if b["type"] == "actions" for e in b["elements"]
                        if e.get("action_id") == data.get("action_id")), None)
        if element is None:
            return error_response(400, "InvalidRequest", "No such button in that message.")
        user = data.get("as_user") or message["user"]
        payload = {"type": "block_actions", "user": {"id": user, "team_id": message["team_id"]},
                   "team": {"id": message["team_id"]}, "api_app_id": "A0CALSYNC",
                   "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"]},
                   "channel": {"id": message["channel"]}, "trigger_id": "1.2.3",
                   "response_url": f"{current_app.config['EMULATOR'].base_url}/slack/hooks/{message['ts']}",
                   "actions": [{"type": "button", "action_id": element["action_id"], "block_id": "b",
                                "value": element.get("value"), "action_ts": f"{time.time():.6f}"}]}
        body = urlencode({"payload": json.dumps(payload)})
        timestamp = str(int(time.time()) + int(data.get("skew", 0)))
        signature = data.get("signature") or sign(slack.signing_secret, timestamp, body)
        answer = current_app.config["EMULATOR"].session.post(slack.interactivity_url, data=body, timeout=10, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature})
        return jsonify({"status": answer.status_code, "body": answer.text, "request": {
            "body": body, "timestamp": timestamp, "signature": signature}})

    return bp
