"""Routes: Graph's teamwork/installedApps under /v1.0, the Bot Connector under /teams/connector, the Bot
Framework's signing keys under /teams/botframework/keys, and the controls under /_emulator/teams."""

from __future__ import annotations

import re
import threading
import uuid

from flask import Blueprint, current_app, jsonify, request

from emulator.errors import GraphError, bad_request, error_response
from emulator.graph import authenticate
from emulator.identity import InvalidToken
from emulator.teams.state import BOT_AUDIENCE, BOT_ISSUER, INSTALL_ROLE, MAX_MESSAGE_BYTES

CATALOG_BIND = re.compile(r"/appCatalogs/teamsApps/([0-9A-Za-z-]{1,64})$")
FILTER = re.compile(r"^teamsApp/id eq '([0-9A-Za-z-]{1,64})'$")
CARD = "application/vnd.microsoft.card.adaptive"


def _em():
    return current_app.config["EMULATOR"]


def _teams():
    return _em().teams


def _user_in_tenant(user_ref: str, tenant_id: str) -> dict:
    user = _em().state.get_user(user_ref) or _em().state.find_user(user_ref)
    if user is None or str(user.get("tenant_id", "")).lower() != tenant_id.lower():
        raise GraphError(404, "NotFound", f"User '{user_ref[:64]}' was not found in the tenant.")
    return user


def _installer(user_ref: str) -> dict:
    caller = authenticate()
    roles = set(caller.claims.get("roles") or []) if not caller.delegated else set()
    scopes = set(str(caller.claims.get("scp", "")).split()) if caller.delegated else set()
    if INSTALL_ROLE not in roles and "TeamsAppInstallation.ReadWriteSelfForUser" not in scopes:
        raise GraphError(403, "Forbidden", "Missing role permissions on the request. API requires one of "
                         f"'{INSTALL_ROLE}'.")
    return _user_in_tenant(user_ref, caller.tenant_id)


def _installation(install: dict) -> dict:
    return {"id": install["id"], "teamsApp": {"id": install["app_id"], "externalId": None,
                                              "displayName": "calsync", "distributionMethod": "organization"},
            "teamsAppDefinition": {"id": install["app_id"] + "-1", "teamsAppId": install["app_id"],
                                   "displayName": "calsync", "version": "1.0.0"}}


def create_teams_graph_blueprint() -> Blueprint:
    bp = Blueprint("teams_graph", __name__, url_prefix="/v1.0")

    @bp.after_request
    def _log(response):
        _em().record_request(request.method, request.path, response.status_code)
        return response

    @bp.post("/users/<user_ref>/teamwork/installedApps")
    def install_app(user_ref: str):
        user = _installer(user_ref)
        body = request.get_json(silent=True)
        bind = body.get("teamsApp@odata.bind") if isinstance(body, dict) else None
        found = CATALOG_BIND.search(bind) if isinstance(bind, str) else None
        if found is None:
            raise bad_request("teamsApp@odata.bind must name an app in the app catalog.", "BadRequest")
        app_id = found.group(1)
        if _teams().catalog and app_id not in _teams().catalog:
            raise GraphError(404, "NotFound", "The Teams app was not found in the app catalog.")
        install, created = _teams().install(user["id"], user["tenant_id"], app_id)
        if not created:
            raise GraphError(409, "Conflict", "App is already installed for the user.")
        announce_installation(_em(), user, install)
        return "", 201

    @bp.get("/users/<user_ref>/teamwork/installedApps")
    def installed_apps(user_ref: str):
        user = _installer(user_ref)
        wanted = request.args.get("$filter")
        match = FILTER.match(wanted) if wanted else None
        if wanted and match is None:
            raise bad_request("Only $filter=teamsApp/id eq '<id>' is supported here.", "BadRequest")
        value = [_installation(i) for i in _teams().installed(user["id"])
                 if match is None or i["app_id"] == match.group(1)]
        return jsonify({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('"
                        + user["id"] + "')/teamwork/installedApps", "value": value})

    @bp.get("/users/<user_ref>/teamwork/installedApps/<installation_id>/chat")
    def installation_chat(user_ref: str, installation_id: str):
        user = _installer(user_ref)
        found = next((i for i in _teams().installed(user["id"]) if i["id"] == installation_id), None)
        if found is None:
            raise GraphError(404, "NotFound", "The app installation was not found.")
        return jsonify({"id": found["chat_id"], "topic": None, "chatType": "oneOnOne",
                        "tenantId": user["tenant_id"], "webUrl": None})

    return bp


def _connector_error(status: int, code: str, message: str, headers: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def create_connector_blueprint() -> Blueprint:
    bp = Blueprint("bot_connector", __name__)

    @bp.get("/teams/botframework/keys")
    def bot_keys():
        return jsonify(_em().identity.jwks())

    @bp.post("/teams/connector/v3/conversations/<path:conversation_id>/activities")
    def send_to_conversation(conversation_id: str):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            claims = _em().identity.verify_access_token_for(token.strip(), BOT_AUDIENCE) if scheme.lower() == \
                "bearer" else None
        except InvalidToken:
            claims = None
        if claims is None:
            return _connector_error(401, "Unauthorized", "Authorization has been denied for this request.")
        chat = _teams().chats.get(conversation_id)
        if chat is None:
            return _connector_error(404, "ConversationNotFound", "Conversation not found.")
        if chat["blocked"]:
            return _connector_error(403, "ConversationBlockedByUser", "User blocked the conversation with the bot.")
        if len(request.get_data()) > MAX_MESSAGE_BYTES:
            return _connector_error(413, "MessageSizeTooBig", "Message size too big.")
        wait = _teams().admit(conversation_id)
        if wait is not None:
            return _connector_error(429, "Throttled", "Too many requests.", {"Retry-After": f"{wait:.2f}"})
        activity = request.get_json(silent=True)
        problem = _activity_problem(activity)
        if problem:
            return _connector_error(400, "BadArgument", problem)
        return jsonify({"id": _teams().record(conversation_id, activity)}), 201

    return bp


def _activity_problem(activity: object) -> str | None:
    if not isinstance(activity, dict) or activity.get("type") != "message":
        return "Activity type must be message."
    for attachment in activity.get("attachments") or []:
        if attachment.get("contentType") != CARD:
            continue
        content = attachment.get("content")
        if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
            return "Adaptive card content is not an AdaptiveCard."
        if str(content.get("version")) not in ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5"):
            return "Teams supports Adaptive Cards up to version 1.5."
    return None


def create_teams_control_blueprint() -> Blueprint:
    bp = Blueprint("teams_control", __name__, url_prefix="/_emulator/teams")

    @bp.post("/config")
    def configure():
        data = request.get_json(silent=True) or {}
        teams = _teams()
        teams.messaging_endpoint = data.get("messaging_endpoint", teams.messaging_endpoint)
        teams.bot_app_id = data.get("bot_app_id", teams.bot_app_id)
        if "catalog" in data:
            teams.catalog = set(data["catalog"])
        return jsonify({"messaging_endpoint": teams.messaging_endpoint, "bot_app_id": teams.bot_app_id})

    @bp.get("/activities")
    def activities():
        return jsonify({"value": _teams().sent(request.args.get("user_id"))})

    @bp.post("/block")
    def block():
        data = request.get_json(silent=True) or {}
        for chat in _teams().chats.values():
            if chat["user_id"] == data.get("user_id"):
                chat["blocked"] = bool(data.get("blocked", True))
        return "", 204

    @bp.post("/install")
    def install():
        """The app installed for a person other than through calsync's Graph call (an admin's app setup policy, or
        the person in the Teams store): the installation and its announcement to the bot, at once (not on a
        thread), answering how the bot's endpoint took it. ``token`` overrides the Bot Framework's, to play a
        forger."""
        data = request.get_json(silent=True) or {}
        user = _em().state.get_user(str(data.get("user_id", "")))
        if user is None or not _teams().messaging_endpoint:
            return error_response(400, "InvalidRequest", "Unknown user, or no messaging endpoint set.")
        found, _ = _teams().install(user["id"], user["tenant_id"], str(data.get("app_id") or "calsync-app"))
        answer = announce_installation(_em(), user, found, token=data.get("token"), wait=True)
        return jsonify({"installation_id": found["id"], "chat_id": found["chat_id"], **answer})

    @bp.get("/announcements")
    def announcements():
        return jsonify({"value": list(_teams().announcements)})

    @bp.post("/press")
    def press():
        """A person presses an Action.Execute button: Teams posts an invoke activity to the bot's endpoint,
        with a Bot Framework token (``token`` overrides it, to play a forger)."""
        data = request.get_json(silent=True) or {}
        teams = _teams()
        sent = next((a for a in teams.sent() if a["id"] == data.get("activity_id")), None)
        if sent is None or not teams.messaging_endpoint:
            return error_response(400, "InvalidRequest", "Unknown activity, or no messaging endpoint set.")
        user = _em().state.get_user(data.get("as_user_id") or sent["user_id"])
        activity = invoke_activity(sent, user, data.get("verb"), data.get("data"), _em().base_url)
        token = data.get("token") or _em().identity.sign(bot_claims(_em().identity.now(), teams.bot_app_id,
                                                                     _em().base_url))
        answer = _em().session.post(teams.messaging_endpoint, json=activity, timeout=10,
                               headers={"Authorization": f"Bearer {token}"})
        try:
            body = answer.json()
        except ValueError:
            body = answer.text
        return jsonify({"status": answer.status_code, "body": body})

    return bp


def announce_installation(em, user: dict, install: dict, token: str | None = None, wait: bool = False) -> dict:
    """Teams tells the bot it was installed for a person: a ``conversationUpdate`` whose ``membersAdded`` names the
    bot, in the new 1:1 conversation, posted to the bot's messaging endpoint with a Bot Framework token (Microsoft
    "Send proactive installation messages": the conversation id comes "from conversation update events" when the
    app is installed). Nothing without a messaging endpoint. Teams sends it on its own, after answering Graph's
    POST: here a thread does, unless ``wait``. Returns (when it waited) the endpoint's status."""
    teams = em.teams
    if not teams.messaging_endpoint:
        return {}
    bot = f"28:{teams.bot_app_id or 'calsync-bot'}"
    activity = {
        "type": "conversationUpdate", "id": str(uuid.uuid4()), "channelId": "msteams",
        "timestamp": em.identity.now().isoformat(), "serviceUrl": em.base_url + "/teams/connector/",
        "from": {"id": f"29:{user['id']}", "aadObjectId": user["id"], "name": user.get("display_name")},
        "recipient": {"id": bot, "name": "calsync"},
        "conversation": {"id": install["chat_id"], "conversationType": "personal", "tenantId": user["tenant_id"]},
        "membersAdded": [{"id": bot}],
        "channelData": {"tenant": {"id": user["tenant_id"]}},
    }
    token = token or em.identity.sign(bot_claims(em.identity.now(), teams.bot_app_id, em.base_url))
    endpoint = teams.messaging_endpoint

    def post() -> dict:
        try:
            answer = em.session.post(endpoint, json=activity, timeout=10, headers={"Authorization": f"Bearer {token}"})
            status = answer.status_code
        except Exception as exc:   # noqa: BLE001 - the bot was unreachable: Teams gives up, as it does
            status = type(exc).__name__
        record = {"user_id": user["id"], "conversation_id": install["chat_id"], "status": status, "activity": activity}
        with teams.lock:
            teams.announcements.append(record)
        return record

    if wait:
        return post()
    threading.Thread(target=post, name="teams-install-announcement", daemon=True).start()
    return {}


def bot_claims(now, bot_app_id: str | None, base_url: str) -> dict:
    epoch = int(now.timestamp())
    return {"iss": BOT_ISSUER, "aud": bot_app_id, "iat": epoch, "nbf": epoch, "exp": epoch + 3600,
            "serviceurl": base_url + "/teams/connector/"}


def invoke_activity(sent: dict, user: dict | None, verb: object, data: object, base_url: str) -> dict:
    """Teams' ``adaptiveCard/action`` invoke for an Action.Execute press (Universal Actions)."""
    return {
        "type": "invoke", "name": "adaptiveCard/action", "id": str(uuid.uuid4()), "channelId": "msteams",
        "serviceUrl": base_url + "/teams/connector/", "replyToId": sent["id"],
        "from": {"id": f"29:{(user or {}).get('id', 'unknown')}", "aadObjectId": (user or {}).get("id"),
                 "name": (user or {}).get("display_name")},
        "conversation": {"id": sent["conversation_id"], "conversationType": "personal",
                         "tenantId": (user or {}).get("tenant_id")},
        "recipient": {"id": "28:calsync-bot", "name": "calsync"},
        "channelData": {"tenant": {"id": (user or {}).get("tenant_id")}},
        "value": {"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"},
    }
