"""The control API under /_emulator: set up tenants, users and events, steer time and faults, read the logs.

Every route needs ``Authorization: Bearer <control secret>``. Errors come back in Graph's shape.
"""

from __future__ import annotations

import hmac
import secrets
import uuid

from flask import Blueprint, current_app, jsonify, request

from emulator import calendars, events
from emulator.calendars import Calendar
from emulator.errors import GraphError, bad_request, not_found
from emulator.faults import parse_config
from emulator.identity import DEV_CLIENT_ID
from emulator.limits import parse_limits

LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


def _em():
    return current_app.config["EMULATOR"]


def _body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.", "InvalidRequest")
    return data


def check_control_secret() -> None:
    """Refuse any /_emulator request without the shared control secret."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    expected = _em().control_secret
    if scheme.lower() != "bearer" or not hmac.compare_digest(secret.strip().encode(), expected.encode()):
        raise GraphError(401, "InvalidAuthenticationToken", "The emulator control secret is missing or wrong.")


def _number(data: dict, name: str, default: float | None = None, low: float = -1e9, high: float = 1e9) -> float:
    value = data.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request(f"'{name}' must be a number between {low:g} and {high:g}.", "InvalidRequest")
    return float(value)


def _calendar_json(calendar: Calendar) -> dict:
    """Graph's calendar JSON plus who lists it, who owns it and, for a shared copy, the owner's calendar id."""
    state = _em().state
    owner = state.require_user(calendar.owner_id or calendar.user_id)
    tenant_id = state.require_user(calendar.user_id)["tenant_id"]
    return calendars.render(calendar, owner, tenant_id) | {
        "userId": calendar.user_id, "ownerUserId": owner["id"], "sourceCalendarId": calendar.source_id,
    }


def create_control_blueprint() -> Blueprint:
    bp = Blueprint("emulator_control", __name__, url_prefix="/_emulator")

    @bp.get("/health")
    def health():
        return jsonify({"status": "ok", "now": events.graph_datetime(_em().clock())})

    @bp.post("/reset")
    def reset():
        _em().reset()
        return "", 204

    # ------------------------------------------------------------ directory

    @bp.post("/tenants")
    def create_tenant():
        return jsonify(_em().state.add_tenant(_body())), 201

    @bp.get("/tenants")
    def list_tenants():
        return jsonify({"value": _em().state.tenants()})

    @bp.post("/users")
    def create_user():
        return jsonify(_em().state.add_user(_body())), 201

    @bp.get("/users")
    def list_users():
        return jsonify({"value": _em().state.users()})

    @bp.get("/users/<user_id>")
    def get_user(user_id: str):
        return jsonify(_em().state.require_user(user_id))

    @bp.patch("/users/<user_id>")
    def update_user(user_id: str):
        """Directory changes: {account_enabled, user_type, roles, display_name}; users/delta reports them."""
        return jsonify(_em().state.update_user(user_id, _body()))

    @bp.delete("/users/<user_id>")
    def delete_user(user_id: str):
        _em().state.delete_user(user_id)
        return "", 204

    @bp.post("/users/<user_id>/password")
    def change_password(user_id: str):
        """The user's password changes: refresh tokens are revoked and subscriptions made with the user's tokens
        are removed (subscriptionRemoved); those made with an app token stay."""
        before = {s["id"] for s in _em().subscriptions.public_all() if s["status"] == "active"}
        _em().state.change_password(user_id)
        after = {s["id"] for s in _em().subscriptions.public_all() if s["status"] == "active"}
        return jsonify({"removed_subscriptions": sorted(before - after)})

    @bp.post("/groups")
    def create_group():
        data = _body()
        tenant_id = data.get("tenant_id")
        if not isinstance(tenant_id, str) or tenant_id.lower() not in {t["id"] for t in _em().state.tenants()}:
            raise bad_request("'tenant_id' must name an existing tenant.", "InvalidRequest")
        name = data.get("display_name") or "Group"
        group_id = data.get("id") or str(uuid.uuid4())
        return jsonify(_em().state.directory.add_group(tenant_id.lower(), str(group_id).lower(), str(name)[:256])), 201

    @bp.post("/groups/<group_id>/members")
    def set_group_members(group_id: str):
        """{add: [user or group ids], remove: [...]}."""
        data = _body()
        add, remove = data.get("add", []), data.get("remove", [])
        if not all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in (add, remove)):
            raise bad_request("'add' and 'remove' must be lists of ids.", "InvalidRequest")
        return jsonify(_em().state.directory.set_members(group_id.lower(), [a.lower() for a in add],
                                                         [r.lower() for r in remove]))

    @bp.put("/scopes")
    def set_scope():
        """Exchange Online RBAC for Applications: {tenant_id, client_id?, user_ids: [...] | null}; the app's
        application-permission requests to other mailboxes answer 403 ErrorAccessDenied."""
        data = _body()
        user_ids = data.get("user_ids")
        if user_ids is not None and not (isinstance(user_ids, list) and all(isinstance(u, str) for u in user_ids)):
            raise bad_request("'user_ids' must be a list of ids or null.", "InvalidRequest")
        tenant_id, client_id = data.get("tenant_id"), data.get("client_id", DEV_CLIENT_ID)
        kind = data.get("kind", "access_policy")
        if not isinstance(tenant_id, str) or not isinstance(client_id, str) or kind not in ("access_policy", "rbac"):
            raise bad_request("'tenant_id' and 'client_id' must be strings, 'kind' access_policy or rbac.",
                              "InvalidRequest")
        _em().state.directory.set_scope(tenant_id, client_id, user_ids, kind)
        return jsonify({"tenant_id": tenant_id, "client_id": client_id, "user_ids": user_ids, "kind": kind})

    @bp.get("/scopes/test")
    def test_scope():
        """Test-ServicePrincipalAuthorization: whether the app may read a mailbox (InScope), by Exchange's rules."""
        tenant_id, client_id = request.args.get("tenant_id", ""), request.args.get("client_id", DEV_CLIENT_ID)
        resource = request.args.get("resource", "")
        user = _em().state.get_user(resource) or _em().state.find_user(resource)
        if user is None:
            raise not_found(f"The mailbox '{resource[:64]}' was not found.", "ErrorInvalidUser")
        consent = _em().identity.tenant_consent(tenant_id, client_id) or {}
        entra = bool({"Calendars.Read", "Calendars.ReadWrite"} & set(consent.get("roles", [])))
        return jsonify({"Resource": user["mail"], "InScope": _em().state.directory.may_read(
            tenant_id, client_id, user["id"], entra), "EntraGrant": entra})
    @bp.put("/users/<user_id>/working-hours")
    def set_working_hours(user_id: str):
        """Set a user's Outlook working hours (Graph's workingHours object, as mailboxSettings returns it)."""
        return jsonify(_em().state.set_working_hours(user_id, _body()))

    @bp.put("/users/<user_id>/mailbox")
    def set_mailbox(user_id: str):
        """Make the user's mailbox unreadable as real tenants can (a guest, no licence, on-premises, an access
        policy, a disabled account...), or readable again with "ok"."""
        return jsonify({"state": _em().state.set_mailbox_state(user_id, _body())})

    @bp.post("/tokens")
    def mint_token():
        """A Graph access token for a user (delegated) or an app in a tenant, without an OAuth dance."""
        return jsonify(_em().mint_token(_body())), 201

    # ------------------------------------------------------------ calendars

    @bp.post("/users/<user_id>/calendars")
    def create_calendar(user_id: str):
        """A new calendar; with owner_user_id, one that user owns and shares with this one (or calendar_id)."""
        return jsonify(_calendar_json(_em().state.create_calendar(user_id, _body()))), 201

    @bp.get("/users/<user_id>/calendars")
    def list_calendars(user_id: str):
        return jsonify({"value": [_calendar_json(c) for c in _em().state.calendars_of(user_id)]})

    @bp.patch("/users/<user_id>/calendars/<calendar_id>")
    def rename_calendar(user_id: str, calendar_id: str):
        return jsonify(_calendar_json(_em().state.rename_calendar(user_id, calendar_id, _body())))

    @bp.delete("/users/<user_id>/calendars/<calendar_id>")
    def delete_calendar(user_id: str, calendar_id: str):
        _em().state.delete_calendar(user_id, calendar_id)
        return "", 204

    # ------------------------------------------------------------ events

    @bp.post("/users/<user_id>/events")
    def create_event(user_id: str):
        item = _em().state.create_event(user_id, _body())
        return jsonify(events.render(item, None, _em().base_url)), 201

    @bp.post("/users/<user_id>/events/batch")
    def create_events(user_id: str):
        data = _body()
        items = data.get("events")
        if not isinstance(items, list) or not 1 <= len(items) <= 10_000:
            raise bad_request("'events' must be a list of 1 to 10,000 events.", "InvalidRequest")
        state = _em().state
        for position, raw in enumerate(items):  # validate all before creating any
            try:
                events.parse_fields(raw, partial=False)
                state.event_calendar(user_id, raw)
            except GraphError as exc:
                raise bad_request(f"events[{position}]: {exc.message}", exc.code) from None
        created = [state.create_event(user_id, raw) for raw in items]
        return jsonify({"value": [{"id": item.id, "iCalUId": item.ical_uid} for item in created]}), 201

    @bp.patch("/users/<user_id>/events/<event_id>")
    def update_event(user_id: str, event_id: str):
        item, instance = _em().state.update_event(user_id, event_id, _body())
        return jsonify(events.render(item, instance, _em().base_url))

    @bp.delete("/users/<user_id>/events/<event_id>")
    def delete_event(user_id: str, event_id: str):
        _em().state.delete_event(user_id, event_id)
        return "", 204

    @bp.post("/users/<user_id>/events/<event_id>/move")
    def move_event(user_id: str, event_id: str):
        """Move an item to another of the owner's calendars: its immutable id stays, its regular id changes."""
        item = _em().state.move_event(user_id, event_id, _body())
        return jsonify(events.render(item, None, _em().base_url) | {"restId": item.rest_id})

    @bp.get("/users/<user_id>/events/<event_id>")
    def get_event(user_id: str, event_id: str):
        item, instance = _em().state.find(user_id, event_id)
        return jsonify(events.render(item, instance, _em().base_url))

    @bp.get("/users/<user_id>/calendar")
    def truth(user_id: str):
        """A calendar's full current view in the window (the default calendar's unless calendar_id names one)."""
        start = events.parse_instant(request.args.get("start"), "start")
        end = events.parse_instant(request.args.get("end"), "end")
        found = _em().state.calendar(user_id, start, end, request.args.get("calendar_id"))
        return jsonify({"value": [events.render(i.item, i, _em().base_url) for i in found]})

    @bp.post("/users/<user_id>/delta/inject")
    def inject_delta(user_id: str):
        """Raw entries for the next delta round of a calendar (``calendar_id``, the default when absent)."""
        data = _body()
        calendar_id = data.get("calendar_id")
        if calendar_id is not None and not isinstance(calendar_id, str):
            raise bad_request("'calendar_id' must be a string.", "InvalidRequest")
        return jsonify({"injected": _em().delta.inject(user_id, calendar_id, data.get("entries"))}), 201

    @bp.post("/users/<user_id>/delta/invalidate")
    def invalidate_delta(user_id: str):
        data = request.get_json(silent=True) or {}
        mode = data.get("mode", "gone") if isinstance(data, dict) else "gone"
        _em().delta.invalidate(user_id, mode)
        return "", 204

    # ------------------------------------------------------------ clock and faults

    @bp.get("/clock")
    def get_clock():
        em = _em()
        return jsonify({"now": events.graph_datetime(em.clock()), "offset_seconds": em.clock.offset_seconds})

    @bp.post("/clock/advance")
    def advance_clock():
        data = _body()
        seconds = _number(data, "seconds", 0.0, -3e8, 3e8) + 60 * _number(data, "minutes", 0.0, -5e6, 5e6)
        now = _em().clock.advance(seconds)
        _em().subscriptions.sweep()
        return jsonify({"now": events.graph_datetime(now), "offset_seconds": _em().clock.offset_seconds})

    @bp.get("/faults")
    def get_faults():
        return jsonify(_em().faults.public())

    @bp.put("/faults")
    def set_faults():
        _em().faults.set(parse_config(_body()))
        return jsonify(_em().faults.public())

    @bp.delete("/faults")
    def clear_faults():
        _em().faults.clear()
        return "", 204

    @bp.put("/quirks")
    def set_quirks():
        """Behaviours developers report but Microsoft does not document, off by default:
        ``silent_occurrence_removal`` (calendarView delta gives no sign of an occurrence removed from a series)."""
        data = _body()
        unknown = sorted(set(data) - {"silent_occurrence_removal"})
        value = data.get("silent_occurrence_removal", False)
        if unknown or not isinstance(value, bool):
            raise bad_request("Known quirks: silent_occurrence_removal (true or false).", "InvalidRequest")
        _em().delta.silent_occurrence_removal = value
        return jsonify({"silent_occurrence_removal": value})

    @bp.get("/limits")
    def get_limits():
        return jsonify(_em().limits.public())

    @bp.put("/limits")
    def set_limits():
        """Outlook's per-app, per-mailbox limits (absent: Outlook's values; null: lifted); statistics start afresh."""
        _em().limits.configure(parse_limits(_body()))
        return jsonify(_em().limits.public())

    @bp.delete("/limits")
    def reset_limits():
        _em().limits.reset()
        return "", 204

    # ------------------------------------------------------------ subscriptions and deliveries

    @bp.get("/subscriptions")
    def list_subscriptions():
        return jsonify({"value": _em().subscriptions.public_all()})

    @bp.delete("/subscriptions/<sub_id>")
    def remove_subscription(sub_id: str):
        _em().subscriptions.remove(sub_id)
        return "", 204

    @bp.post("/subscriptions/<sub_id>/lifecycle")
    def send_lifecycle(sub_id: str):
        event = _body().get("lifecycleEvent")
        if event not in LIFECYCLE_EVENTS:
            raise bad_request(f"'lifecycleEvent' must be one of {', '.join(LIFECYCLE_EVENTS)}.", "InvalidRequest")
        subs = _em().subscriptions
        with subs.lock:
            sub = subs.by_id.get(sub_id)
        if sub is None:
            raise not_found("The subscription does not exist.", "ResourceNotFound")
        if event == "subscriptionRemoved":
            subs.remove(sub_id)
        elif not subs.lifecycle(sub, event):
            raise bad_request("The subscription has no lifecycleNotificationUrl or is not active.", "InvalidRequest")
        return "", 202

    @bp.get("/deliveries")
    def deliveries():
        entries = _em().notifier.entries()
        kind = request.args.get("kind")
        if kind:
            entries = [e for e in entries if e["kind"] == kind]
        return jsonify({"value": entries, "busy": _em().notifier.busy()})

    @bp.delete("/deliveries")
    def clear_deliveries():
        _em().notifier.clear()
        return "", 204

    @bp.post("/deliveries/wait-idle")
    def wait_idle():
        data = request.get_json(silent=True) or {}
        timeout = _number(data if isinstance(data, dict) else {}, "timeout", 10.0, 0, 300)
        idle = _em().notifier.wait_idle(timeout)
        if not idle:
            raise GraphError(408, "RequestTimeout", "Deliveries are still pending.")
        return jsonify({"idle": True})

    @bp.get("/requests")
    def graph_requests():
        return jsonify({"value": _em().requests_log()})

    @bp.delete("/requests")
    def clear_requests():
        _em().clear_requests()
        return "", 204

    return bp


def token_claims(em, data: dict) -> dict:
    """Claims like the identity platform's for a user (delegated) or an app (client credentials) token."""
    client_id = data.get("client_id", DEV_CLIENT_ID)
    lifetime = _number(data, "lifetime_seconds", 3599, 1, 86_400 * 2)
    if not isinstance(client_id, str) or not client_id:
        raise bad_request("'client_id' must be a string.", "InvalidRequest")
    now = int(em.clock().timestamp())
    base = {"aud": "https://graph.microsoft.com", "iat": now, "nbf": now, "exp": now + int(lifetime),
            "appid": client_id, "azp": client_id, "appidacr": "1", "azpacr": "1", "ver": "1.0",
            "uti": secrets.token_urlsafe(16), "app_displayname": "calsync"}
    if data.get("user_id"):
        user = em.state.require_user(str(data["user_id"]))
        scopes = data.get("scopes", ["Calendars.Read", "User.Read"])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise bad_request("'scopes' must be a list of strings.", "InvalidRequest")
        return base | {
            "iss": f"https://sts.windows.net/{user['tenant_id']}/", "tid": user["tenant_id"], "oid": user["id"],
            "sub": user["id"], "scp": " ".join(scopes), "idtyp": "user", "upn": user["user_principal_name"],
            "unique_name": user["user_principal_name"], "name": user["display_name"],
        }
    tenant_id = data.get("tenant_id")
    if not isinstance(tenant_id, str) or tenant_id.lower() not in {t["id"] for t in em.state.tenants()}:
        raise bad_request("Give 'user_id' (delegated) or an existing 'tenant_id' (application).", "InvalidRequest")
    roles = data.get("roles", ["Calendars.Read"])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise bad_request("'roles' must be a list of strings.", "InvalidRequest")
    tenant_id = tenant_id.lower()
    sp = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{client_id}"))
    return base | {"iss": f"https://sts.windows.net/{tenant_id}/", "tid": tenant_id, "oid": sp, "sub": sp,
                   "roles": roles, "idtyp": "app"}
