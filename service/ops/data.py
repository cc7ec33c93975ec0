"""Operators' API on one user's data: their calendars' sync state, the export, and deleting it all.

The same bearer token (or operator session) as the rest of /ops; users are named by Graph id or email.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, render_template, request, url_for

from service.connections import export as mydata
from service.ops.routes import failure, form_expired, ops_required
from service.store import as_utc, users
from service.store import calendars as calendar_store
from service.web.csrf import CSRFError, csrf

log = logging.getLogger(__name__)

bp = Blueprint("ops_data", __name__, url_prefix="/ops/api/users")
csrf.exempt(bp)  # as /ops: bearer-token scripts need no form token; ops_required checks session requests
bp.register_error_handler(CSRFError, form_expired)


def _rt():
    return current_app.extensions["calsync"]


def _user(key: str):
    return users.find(_rt().db, key) if 0 < len(key) <= 320 else None


def _not_found():
    return failure("not-found", "no such user")


@bp.get("/<key>/calendars")
@ops_required
def calendars(key: str):
    """Each calendar of the user: whether it is read, its window, last round and last error."""
    user = _user(key)
    if user is None:
        return _not_found()
    return {"user_id": user.id, "calendars_refreshed_at": _iso(user.sync.calendars_refreshed_at), "items": [
        {"id": c.calendar_id, "name": c.name, "owner_email": c.owner_email, "is_default": c.is_default,
         "is_own": c.is_own, "enabled": c.enabled, "enabled_by": c.enabled_by, "has_cursor": bool(c.delta_link),
         "window_start": _iso(c.window_start), "window_end": _iso(c.window_end), "last_sync_at": _iso(c.last_sync_at),
         "last_result": c.last_result, "last_error": c.last_error}
        for c in calendar_store.for_user(_rt().db, user.id)]}


@bp.get("/<key>/export")
@ops_required
def export(key: str):
    """The user's data export (what the user downloads from their connection page), streamed."""
    user = _user(key)
    chunks = mydata.export(_rt().db, user.id) if user else None
    if chunks is None:
        return _not_found()
    log.info("operator exported the data of user %s", user.id)
    return Response(chunks, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.post("/<key>/delete")
@ops_required
def delete(key: str):
    """Delete everything held about the user (Graph subscription first); 202 while a sync still has to stop."""
    user = _user(key)
    if user is None:
        return _not_found()
    if "csrf_token" in request.form and (request.form.get("confirm") or "").strip().lower() != user.email.lower():
        return failure("bad-request", "Nothing was deleted: type the user's email exactly to confirm.",
                       back=url_for("ops_users.page", key=user.id))
    done = _rt().connections.delete_all_data(user.id)
    log.info("operator deleted the data of user %s", user.id)
    if "csrf_token" in request.form:
        return render_template("ops/done.html", title="Data deleted", text=(
            f"Everything calsync held about {user.email} is deleted" + (
                " (a sync was running: the rest goes within minutes)." if done.get("pending") else ".")))
    return {"user_id": user.id, **done}, 202 if done.get("pending") else 200


def _iso(value):
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None
