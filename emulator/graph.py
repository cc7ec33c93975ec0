"""The Graph v1.0 surface: users, calendars, events, calendarView delta and subscriptions, behind Bearer tokens.

Requests that address a mailbox (anything below /me/ or /users/{id}/) pass Outlook's per-app, per-mailbox limits
first (emulator/limits.py); /me and /users/{id} themselves are directory reads, outside them. Writes of
subscriptions (create, update, delete, reauthorize) pass the subscription service's per-app, per-tenant limit.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, current_app, g, jsonify, request

from emulator import calendars, events
from emulator.batch import BATCH_MARK, add_batch_route
from emulator.calendars import Calendar
from emulator.directory import DEFAULT_PAGE, MAX_PAGE, USER_FIELDS, user_json
from emulator.errors import GraphError, add_request_ids, bad_request, error_response
from emulator.identity import InvalidToken
from emulator.state import item_not_found
from emulator.subscriptions import OUT_OF_SCOPE, Caller

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000
READ_SCOPES = {"Calendars.Read", "Calendars.ReadWrite", "Calendars.ReadBasic", "Calendars.Read.Shared"}
DIRECTORY_READ = {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
GROUP_MEMBERS_READ = {"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All",
                      "GroupMember.ReadWrite.All"}
MAILBOX_SETTINGS_SCOPES = {"MailboxSettings.Read", "MailboxSettings.ReadWrite"}
SHARED_SCOPES = {"Calendars.Read.Shared", "Calendars.ReadWrite.Shared"}
# translateExchangeIds: User.ReadBasic.All least privileged, User.Read among the higher (user-translateexchangeids)
TRANSLATE_SCOPES = {"User.ReadBasic.All", "User.Read", "User.Read.All", "User.ReadWrite", "User.ReadWrite.All"}
ID_FORMATS = ("restId", "restImmutableEntryId")
MAILBOX_PATH = re.compile(r"^/v1\.0/(?:(me)|users/([^/]+))/.")


def _em():
    return current_app.config["EMULATOR"]


def _working_hours(user: dict) -> dict:
    """The user's Outlook working hours (Graph's workingHours shape); Outlook's default unless a test set them."""
    return user.get("working_hours") or {
        "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
        "startTime": "08:00:00.0000000", "endTime": "17:00:00.0000000",
        "timeZone": {"name": events.windows_name(user["time_zone"])}}


def _prefer() -> dict[str, str]:
    """The Prefer header(s) as a dict (odata.maxpagesize, outlook.timezone, IdType…)."""
    prefs: dict[str, str] = {}
    for header in request.headers.getlist("Prefer"):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name:
                prefs[name.strip().lower()] = value.strip().strip('"')
    return prefs


def immutable_ids() -> bool:
    """Whether this request asked for immutable ids (`Prefer: IdType="ImmutableId"`); it applies to this request
    only, as Graph documents."""
    return _prefer().get("idtype", "").lower() == "immutableid"


def _out_tz() -> str | None:
    name = _prefer().get("outlook.timezone")
    if not name:
        return None
    try:
        events.zone(name)
    except ValueError:
        raise bad_request(f"The time zone '{name[:64]}' is not supported.", "ErrorTimeZoneNotSupported") from None
    return name


def authenticate() -> Caller:
    """The caller of this request from its Bearer token (verified once per request); 401 otherwise."""
    if "caller" in g:
        return g.caller
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.",
                         {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})
    try:
        claims = _em().identity.verify_access_token(token.strip())
    except InvalidToken as exc:
        reason = str(exc) or "invalid token"
        message = ("Lifetime validation failed, the token is expired." if "expired" in reason
                   else f"Access token validation failure: {reason}.")
        raise GraphError(401, "InvalidAuthenticationToken", message,
                         {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}) from None
    delegated = bool(claims.get("scp"))
    app_id = claims.get("appid") or claims.get("azp") or ""
    exp = dt.datetime.fromtimestamp(int(claims.get("exp", 0)), dt.UTC)
    g.caller = Caller(claims, delegated, claims.get("oid") if delegated else None, str(claims.get("tid", "")),
                      str(app_id), exp)
    return g.caller


def _has_permission(caller: Caller, wanted: set[str]) -> bool:
    granted = set(str(caller.claims.get("scp", "")).split()) if caller.delegated else set(caller.claims.get("roles")
                                                                                            or [])
    return bool(granted & wanted)


FULL_READ = {"Calendars.Read", "Calendars.ReadWrite", "Calendars.Read.Shared", "Calendars.ReadWrite.Shared"}
BASIC_HIDDEN = ("body", "bodyPreview")   # Calendars.ReadBasic: "except for properties such as body, attachments,
                                         # and extensions" (attachments and extensions are not modelled)


def basic_only(caller: Caller) -> bool:
    """The caller may read events only without their body (Calendars.ReadBasic, nothing more)."""
    return _has_permission(caller, {"Calendars.ReadBasic"}) and not _has_permission(caller, FULL_READ)


def as_permitted(caller: Caller, event: dict) -> dict:
    """An event as the caller's permissions let Graph show it."""
    return {k: v for k, v in event.items() if k not in BASIC_HIDDEN} if basic_only(caller) else event


def _access_denied() -> GraphError:
    return GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


def _path_user(caller: Caller, user_ref: str | None) -> dict:
    """The user a /me or /users/{id} path names, in the caller's tenant; 404 ErrorInvalidUser otherwise."""
    state = _em().state
    if user_ref is None:
        if not caller.delegated:
            raise bad_request("/me request is only valid with delegated authentication flow.", "BadRequest")
        user = state.get_user(caller.user_id)
    else:
        user = state.get_user(user_ref) or state.find_user(user_ref)
    if user is None or user["tenant_id"] != caller.tenant_id:
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{(user_ref or 'me')[:100]}' is invalid.")
    state.check_mailbox(user["id"])
    return user


def mailbox(caller: Caller, user_ref: str | None, wanted: set[str] = READ_SCOPES) -> dict:
    """The user whose data is asked for, if the caller may read it."""
    user = _path_user(caller, user_ref)
    if caller.delegated:
        if user["id"] != caller.user_id or not _has_permission(caller, wanted):
            raise _access_denied()
        return user
    if not _em().state.directory.may_read(caller.tenant_id, caller.app_id, user["id"],
                                          _has_permission(caller, wanted)):
        raise GraphError(403, "ErrorAccessDenied", OUT_OF_SCOPE)   # RBAC for Applications / access policy
    return user


def calendar_access(caller: Caller, user_ref: str | None, calendar_id: str | None = None) -> tuple[dict, Calendar]:
    """The mailbox and the calendar list entry a path names (the default calendar without an id), if readable.

    A user's own list, shared copies included, needs Calendars.Read; another user's calendar, read directly from
    the owner's mailbox, needs a share and Calendars.Read.Shared (or ReadWrite.Shared), as Graph documents.
    """
    state = _em().state
    user = _path_user(caller, user_ref)
    if not caller.delegated or user["id"] == caller.user_id:
        user = mailbox(caller, user_ref)
        return user, state.get_calendar(user["id"], calendar_id)
    try:
        calendar = state.get_calendar(user["id"], calendar_id)
    except GraphError:
        raise _access_denied() from None
    if calendar.shared or not state.shared_with(calendar, caller.user_id) or not _has_permission(caller,
                                                                                                   SHARED_SCOPES):
        raise _access_denied()
    return user, calendar


def _calendar_json(calendar: Calendar, caller: Caller) -> dict:
    state = _em().state
    owner = state.require_user(calendar.owner_id or calendar.user_id)
    tenant_id = state.require_user(calendar.user_id)["tenant_id"]
    return calendars.render(calendar, owner, tenant_id, caller.user_id if caller.delegated else None)


def _admit() -> None:
    """Hold a slot of the per-app, per-mailbox limits for a request that addresses a mailbox (429 when over)."""
    match = MAILBOX_PATH.match(request.path)
    if not match:
        return
    try:
        caller = authenticate()
    except GraphError:
        return  # the route answers 401
    state = _em().state
    if match.group(1):
        user = state.get_user(caller.user_id) if caller.delegated else None
    else:
        user = state.get_user(match.group(2)) or state.find_user(match.group(2))
    if user is None or user["tenant_id"] != caller.tenant_id:
        return  # the route answers 400 or 404
    g.mailbox_slot = _em().limits.acquire(caller.app_id, user["id"])


def _subscription_write(caller: Caller) -> None:
    """The subscription service's limit on writes per app and tenant (429 TooManyRequests when over)."""
    _em().limits.admit_subscription_write(caller.app_id, caller.tenant_id)


def _user_json(user: dict) -> dict:
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        "businessPhones": [],
        "displayName": user["display_name"],
        "givenName": user.get("given_name"),
        "jobTitle": user.get("job_title"),
        "mail": user["mail"],
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": "en-US",
        "surname": user.get("surname"),
        "userPrincipalName": user["user_principal_name"],
        "id": user["id"],
    }


def create_graph_blueprint() -> Blueprint:
    bp = Blueprint("graph", __name__, url_prefix="/v1.0")

    @bp.before_request
    def _limits_and_faults():
        g.started = time.monotonic()
        _admit()
        injected = _em().faults.for_request(request.path[len("/v1.0"):])
        if injected is None:
            return None
        if injected.delay:
            time.sleep(injected.delay)
        if injected.status == 429:
            headers = {"Retry-After": injected.retry_after or "1"}
            return error_response(429, "TooManyRequests", "Too many requests.", headers)
        if injected.status == 503:
            headers = {"Retry-After": injected.retry_after} if injected.retry_after else {}
            return error_response(503, "ServiceUnavailable", "Service unavailable.", headers)
        if injected.status == 504:
            return error_response(504, "GatewayTimeout", "The gateway did not receive a timely response.")
        if injected.status in (500, 502):
            return error_response(injected.status, "InternalServerError" if injected.status == 500 else "BadGateway",
                                  "The service encountered an error.")
        return None

    @bp.after_request
    def _log(response: Response):
        _em().record_request(request.method, request.path, response.status_code,
                             ", ".join(request.headers.getlist("Prefer")) or None,
                             request.headers.get("client-request-id"), bool(request.environ.get(BATCH_MARK)))
        return add_request_ids(response)

    @bp.teardown_request
    def _release(_exc: BaseException | None):
        slot = g.pop("mailbox_slot", None)
        if slot is not None:
            _em().limits.release(slot)

    # ------------------------------------------------------------ users

    @bp.get("/users/delta")
    @bp.get("/users/delta()")
    def users_delta():
        """`GET /users/delta` (User.Read.All): the tenant's users, then only what changed (deltaLink)."""
        caller = authenticate()
        if not _has_permission(caller, DIRECTORY_READ):
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        select = _select_arg()
        if select and any(name not in USER_FIELDS + ("givenName", "surname", "jobTitle") for name in select):
            raise bad_request("Could not find a property named in $select on type 'microsoft.graph.user'.",
                              "Request_BadRequest")
        page = _prefer().get("odata.maxpagesize", "")
        size = min(int(page), MAX_PAGE) if page.isdigit() and int(page) > 0 else DEFAULT_PAGE
        state = _em().state
        body = state.directory.delta_page(
            caller.tenant_id, state.get_user, state.user_ids, request.args.get("$deltatoken"),
            request.args.get("$skiptoken"), size, f"{_em().base_url}/v1.0/users/delta", select)
        return jsonify(body)

    @bp.get("/groups/<group_id>/transitiveMembers")
    @bp.get("/groups/<group_id>/transitiveMembers/microsoft.graph.user")
    @bp.get("/groups/<group_id>/transitiveMembers/graph.user")
    def transitive_members(group_id: str):
        """A group's members, nested groups flattened (GroupMember.Read.All; the cast keeps users only)."""
        caller = authenticate()
        if not _has_permission(caller, GROUP_MEMBERS_READ):
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        state = _em().state
        members = state.directory.transitive_members(caller.tenant_id, group_id)
        users_only = request.path.endswith("graph.user")
        entries = []
        for member in members:
            user = state.get_user(member)
            if user is not None:
                entries.append({"@odata.type": "#microsoft.graph.user"} | user_json(user))
            elif not users_only and (group := state.directory.is_group(member)):
                entries.append({"@odata.type": "#microsoft.graph.group", "id": group["id"],
                                "displayName": group["displayName"]})
        top = _page_size(_int_arg("$top", DEFAULT_PAGE))
        skip = _int_arg("$skip", 0)
        body = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
                "value": entries[skip:skip + top]}
        if skip + top < len(entries):
            body["@odata.nextLink"] = f"{_em().base_url}{request.path}?" + urlencode({"$top": top, "$skip": skip + top})
        return jsonify(body)

    @bp.get("/me")
    @bp.get("/users/<user_ref>")
    def get_user(user_ref: str | None = None):
        caller = authenticate()
        state = _em().state
        user = state.get_user(caller.user_id) if user_ref is None and caller.delegated else None
        if user_ref is None and not caller.delegated:
            raise bad_request("/me request is only valid with delegated authentication flow.", "BadRequest")
        if user_ref is not None:
            user = state.get_user(user_ref) or state.find_user(user_ref)
            if user is None or user["tenant_id"] != caller.tenant_id:
                raise GraphError(404, "Request_ResourceNotFound",
                                 f"Resource '{user_ref[:100]}' does not exist or one of its queried reference-property "
                                 "objects are not present.")
            if caller.delegated and user["id"] != caller.user_id:
                raise GraphError(403, "Authorization_RequestDenied",
                                 "Insufficient privileges to complete the operation.")
        return jsonify(events.select(_user_json(user), _select_arg()) if _select_arg() else _user_json(user))

    @bp.get("/me/mailboxSettings")
    @bp.get("/users/<user_ref>/mailboxSettings")
    def mailbox_settings(user_ref: str | None = None):
        # user-get-mailboxsettings: delegated and application MailboxSettings.Read (least), MailboxSettings.ReadWrite
        user = mailbox(authenticate(), user_ref, MAILBOX_SETTINGS_SCOPES)
        return jsonify({
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('{user['id']}')/mailboxSettings",
            "timeZone": events.windows_name(user["time_zone"]),
            "dateFormat": "yyyy-MM-dd",
            "timeFormat": "HH:mm",
            "language": {"locale": "en-US", "displayName": "English (United States)"},
            "workingHours": _working_hours(user),
        })

    @bp.get("/me/mailboxSettings/workingHours")
    @bp.get("/users/<user_ref>/mailboxSettings/workingHours")
    def mailbox_working_hours(user_ref: str | None = None):
        user = mailbox(authenticate(), user_ref, MAILBOX_SETTINGS_SCOPES)
        return jsonify({"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('{user['id']}')"
                                          "/mailboxSettings/workingHours", **_working_hours(user)})

    # ------------------------------------------------------------ calendars

    @bp.get("/me/calendars")
    @bp.get("/users/<user_ref>/calendars")
    def list_calendars(user_ref: str | None = None):
        caller = authenticate()
        user = mailbox(caller, user_ref)
        listed = _em().state.calendars_of(user["id"])
        return jsonify(_page(f"https://graph.microsoft.com/v1.0/$metadata#users('{user['id']}')/calendars", listed,
                             lambda c: events.select(_calendar_json(c, caller), _select_arg())))

    @bp.get("/me/calendar")
    @bp.get("/users/<user_ref>/calendar")
    @bp.get("/me/calendars/<calendar_id>")
    @bp.get("/users/<user_ref>/calendars/<calendar_id>")
    def get_calendar(user_ref: str | None = None, calendar_id: str | None = None):
        caller = authenticate()
        user, calendar = calendar_access(caller, user_ref, calendar_id)
        context = f"https://graph.microsoft.com/v1.0/$metadata#users('{user['id']}')/calendars/$entity"
        return jsonify({"@odata.context": context} | events.select(_calendar_json(calendar, caller), _select_arg()))

    # ------------------------------------------------------------ events

    def find_event(caller, event_id: str, user_ref: str | None, calendar_id: str | None):
        """The mailbox, the event and the occurrence (None for a series or single event) an event URL names:
        by the mailbox's view of it, or only among the named calendar's events."""
        state = _em().state
        if calendar_id is None:
            user = mailbox(caller, user_ref)
            item, instance = state.find_visible(user["id"], event_id)
            return user, item, instance
        user, calendar = calendar_access(caller, user_ref, calendar_id)
        source = state.source(calendar)
        item, instance = state.find(source.user_id, event_id)
        if item.calendar_id != source.id:
            raise item_not_found()
        return user, item, instance

    @bp.get("/me/events/<event_id>")
    @bp.get("/users/<user_ref>/events/<event_id>")
    @bp.get("/me/calendars/<calendar_id>/events/<event_id>")
    @bp.get("/users/<user_ref>/calendars/<calendar_id>/events/<event_id>")
    def get_event(event_id: str, user_ref: str | None = None, calendar_id: str | None = None):
        caller = authenticate()
        user, item, instance = find_event(caller, event_id, user_ref, calendar_id)
        out_tz = _out_tz()
        event = events.render(item, instance, _em().base_url, out_tz, immutable_ids())
        event = as_permitted(caller, events.select(event, _select_arg()) | _series_parts(item, instance, out_tz))
        context = f"https://graph.microsoft.com/v1.0/$metadata#users('{user['id']}')/events/$entity"
        response = jsonify({"@odata.context": context} | event)
        if out_tz:
            response.headers["Preference-Applied"] = f'outlook.timezone="{out_tz}"'
        return response

    @bp.get("/me/events/<event_id>/instances")
    @bp.get("/users/<user_ref>/events/<event_id>/instances")
    @bp.get("/me/calendars/<calendar_id>/events/<event_id>/instances")
    @bp.get("/users/<user_ref>/calendars/<calendar_id>/events/<event_id>/instances")
    def list_instances(event_id: str, user_ref: str | None = None, calendar_id: str | None = None):
        """event: instances: "the occurrences and exceptions of the event in the specified time range" (cancelled
        occurrences are not among them); client paging with $top/$skip as calendarView."""
        caller = authenticate()
        user, item, instance = find_event(caller, event_id, user_ref, calendar_id)
        start = events.parse_instant(request.args.get("startDateTime"), "startDateTime")
        end = events.parse_instant(request.args.get("endDateTime"), "endDateTime")
        if end <= start:
            raise bad_request("endDateTime must be after startDateTime.", "ErrorInvalidParameter")
        found = [] if instance is not None else events.instances(item, start, end)
        out_tz = _out_tz()
        return jsonify(_page(EVENTS_CONTEXT, found, lambda i: as_permitted(caller, events.select(
            events.render(item, i, _em().base_url, out_tz, immutable_ids()), _select_arg()))))

    @bp.get("/me/calendarView/delta")
    @bp.get("/me/calendarview/delta")
    @bp.get("/users/<user_ref>/calendarView/delta")
    @bp.get("/users/<user_ref>/calendarview/delta")
    @bp.get("/me/calendars/<calendar_id>/calendarView/delta")
    @bp.get("/me/calendars/<calendar_id>/calendarview/delta")
    @bp.get("/users/<user_ref>/calendars/<calendar_id>/calendarView/delta")
    @bp.get("/users/<user_ref>/calendars/<calendar_id>/calendarview/delta")
    # OData's function-call form, which Microsoft's SDKs send: `.../calendarView/delta()`.
    @bp.get("/me/calendarView/delta()")
    @bp.get("/users/<user_ref>/calendarView/delta()")
    @bp.get("/me/calendars/<calendar_id>/calendarView/delta()")
    @bp.get("/users/<user_ref>/calendars/<calendar_id>/calendarView/delta()")
    def calendar_view_delta(user_ref: str | None = None, calendar_id: str | None = None):
        return _delta(authenticate(), user_ref, calendar_id)

    @bp.get("/me/calendarView")
    @bp.get("/me/calendarview")
    @bp.get("/users/<user_ref>/calendarView")
    @bp.get("/users/<user_ref>/calendarview")
    @bp.get("/me/calendars/<calendar_id>/calendarView")
    @bp.get("/me/calendars/<calendar_id>/calendarview")
    @bp.get("/users/<user_ref>/calendars/<calendar_id>/calendarView")
    @bp.get("/users/<user_ref>/calendars/<calendar_id>/calendarview")
    def calendar_view(user_ref: str | None = None, calendar_id: str | None = None):
        caller = authenticate()
        user, calendar = calendar_access(caller, user_ref, calendar_id)
        start = events.parse_instant(request.args.get("startDateTime"), "startDateTime")
        end = events.parse_instant(request.args.get("endDateTime"), "endDateTime")
        out_tz = _out_tz()
        found = _em().state.calendar(user["id"], start, end, calendar.id)
        response = jsonify(_page(EVENTS_CONTEXT, found, lambda i: as_permitted(caller, events.select(
            events.render(i.item, i, _em().base_url, out_tz, immutable_ids()), _select_arg()))))
        if out_tz:
            response.headers["Preference-Applied"] = f'outlook.timezone="{out_tz}"'
        return response

    # ------------------------------------------------------------ subscriptions

    @bp.post("/subscriptions")
    def create_subscription():
        caller = authenticate()
        _subscription_write(caller)
        body = request.get_json(silent=True)
        sub = _em().subscriptions.create(caller, body, immutable_ids())
        return jsonify(sub.public()), 201

    @bp.get("/subscriptions")
    def list_subscriptions():
        caller = authenticate()
        return jsonify({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions",
                        "value": [s.public() for s in _em().subscriptions.list(caller)]})

    @bp.get("/subscriptions/<sub_id>")
    def get_subscription(sub_id: str):
        return jsonify(_em().subscriptions.get(authenticate(), sub_id).public())

    @bp.patch("/subscriptions/<sub_id>")
    def update_subscription(sub_id: str):
        caller = authenticate()
        _subscription_write(caller)
        sub = _em().subscriptions.update(caller, sub_id, request.get_json(silent=True))
        return jsonify(sub.public())

    @bp.delete("/subscriptions/<sub_id>")
    def delete_subscription(sub_id: str):
        caller = authenticate()
        _subscription_write(caller)
        _em().subscriptions.delete(caller, sub_id)
        return "", 204

    @bp.post("/subscriptions/<sub_id>/reauthorize")
    def reauthorize_subscription(sub_id: str):
        caller = authenticate()
        _subscription_write(caller)
        _em().subscriptions.reauthorize(caller, sub_id)
        return "", 204

    # ------------------------------------------------------------ JSON batching

    add_batch_route(bp)

    # ------------------------------------------------------------ ids

    @bp.post("/me/translateExchangeIds")
    @bp.post("/users/<user_ref>/translateExchangeIds")
    def translate_exchange_ids(user_ref: str | None = None):
        """user: translateExchangeIds, between the regular and the immutable REST formats (delegated only)."""
        caller = authenticate()
        if not caller.delegated:
            raise _access_denied()
        user = mailbox(caller, user_ref, TRANSLATE_SCOPES)
        body = request.get_json(silent=True)
        # The docs name the parameters inputIds, sourceIdType, targetIdType; the v1.0 schema (and so the SDKs)
        # InputIds, SourceIdType, TargetIdType: OData binds them either way.
        body = {str(k).lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
        ids = body.get("inputids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 1000 or not all(isinstance(i, str) for i in ids):
            raise bad_request("inputIds must be a collection of 1 to 1000 identifiers.", "ErrorInvalidRequest")
        source, target = body.get("sourceidtype"), body.get("targetidtype")
        if source not in ID_FORMATS or target not in ID_FORMATS:
            raise bad_request("sourceIdType and targetIdType must be restId or restImmutableEntryId here.",
                              "ErrorInvalidRequest")
        return jsonify({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(convertIdResult)",
                        "value": _em().state.translate_ids(user["id"], ids, source, target)})

    return bp


def _series_parts(item: events.Item, instance: events.Instance | None, out_tz: str | None) -> dict:
    """A series master's ``cancelledOccurrences`` ($select: "OID.{master id}.{date}") and ``exceptionOccurrences``
    ($expand), which Graph returns only on a GET of the master that asks for them."""
    if instance is not None or item.type != "seriesMaster":
        return {}
    wanted = {n.strip().lower() for n in (_select_arg() or [])}
    expand = {n.strip().split("(")[0].lower() for n in (request.args.get("$expand") or "").split(",")}
    master_id = item.id if immutable_ids() else item.rest_id
    parts: dict = {}
    if "cancelledoccurrences" in wanted:
        parts["cancelledOccurrences"] = [f"OID.{master_id}.{key}" for key in sorted(item.deleted)]
    if "exceptionoccurrences" in expand:
        parts["exceptionOccurrences"] = [
            events.render(item, events.occurrence(item, key), _em().base_url, out_tz, immutable_ids())
            for key in sorted(item.exceptions) if key not in item.deleted]
    return parts


def _select_arg() -> list[str] | None:
    raw = request.args.get("$select")
    return [s for s in raw.split(",") if s.strip()] if raw else None


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise bad_request(f"Invalid value '{raw[:20]}' for query parameter {name}.", "BadRequest")
    return int(raw)


def _page_size(value: int) -> int:
    return max(1, min(value, MAX_PAGE_SIZE))


EVENTS_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#Collection(event)"


def _page(context: str, items: list, render) -> dict:
    """One page of a list with client-side paging ($top/$skip, as Outlook lists do): the rendered items at
    ``$skip`` and an @odata.nextLink while more follow."""
    skip, top = _int_arg("$skip", 0), _page_size(_int_arg("$top", DEFAULT_PAGE_SIZE))
    body: dict = {"@odata.context": context, "value": [render(item) for item in items[skip:skip + top]]}
    if skip + top < len(items):
        body["@odata.nextLink"] = _next_link(skip + top, top)
    return body


def _next_link(skip: int, top: int) -> str:
    """This request's URL for the page at ``skip`` (client-side paging with $top/$skip, as Outlook lists do)."""
    args = request.args.to_dict() | {"$skip": str(skip), "$top": str(top)}
    return request.base_url + "?" + urlencode(args, safe="$:")


def _delta(caller: Caller, user_ref: str | None, calendar_id: str | None):
    em = _em()
    prefix = "me" if user_ref is None else f"users/{user_ref}"
    if calendar_id is not None:
        prefix += f"/calendars/{quote(calendar_id, safe='=-_')}"
    link_base = f"{em.base_url}/v1.0/{prefix}/calendarView/delta"
    user, calendar = calendar_access(caller, user_ref, calendar_id)  # 404 once the calendar is gone
    prefs = _prefer()
    size_text = prefs.get("odata.maxpagesize", "")
    page_size = _page_size(int(size_text)) if size_text.isdigit() else None
    out_tz = _out_tz()
    skiptoken = request.args.get("$skiptoken")
    deltatoken = request.args.get("$deltatoken")
    here = (user["id"], calendar.id)
    if skiptoken:
        _check_owner(em.delta.round_owner(skiptoken), here)
        round_id = None
    elif deltatoken:
        _check_owner(em.delta.token_owner(deltatoken), here)
        round_id = em.delta.continue_round(deltatoken, em.base_url, out_tz, link_base)
    else:
        start = events.parse_instant(request.args.get("startDateTime"), "startDateTime")
        end = events.parse_instant(request.args.get("endDateTime"), "endDateTime")
        if end <= start:
            raise bad_request("endDateTime must be after startDateTime.", "ErrorInvalidParameter")
        round_id = em.delta.start_round(user["id"], calendar.id, start, end, em.base_url, out_tz)
    entries, next_skip, new_delta = em.delta.page(skiptoken or f"{round_id}.0", page_size, link_base,
                                                  DEFAULT_PAGE_SIZE, immutable_ids())
    body: dict = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)",
                  "value": [as_permitted(caller, e) if isinstance(e, dict) else e for e in entries]}
    if next_skip:
        body["@odata.nextLink"] = f"{link_base}?$skiptoken={next_skip}"
    else:
        body["@odata.deltaLink"] = f"{link_base}?$deltatoken={new_delta}"
    response = jsonify(body)
    applied = []
    if size_text.isdigit():
        applied.append(f"odata.maxpagesize={page_size}")
    if out_tz:
        applied.append(f'outlook.timezone="{out_tz}"')
    if applied:
        response.headers["Preference-Applied"] = ", ".join(applied)
    return response


def _check_owner(owner: tuple[str, str] | None, here: tuple[str, str]) -> None:
    """A known state token must belong to this (mailbox, calendar); unknown ones fail in the delta engine."""
    if owner is not None and owner != here:
        raise bad_request("The token does not belong to this calendar view.", "SyncStateInvalid")
