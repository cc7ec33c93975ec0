"""Web pages: meeting dashboards (signed link or signed-in attendee) and digest settings/unsubscribe."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, request, session

from service import timezones
from service.digest import links, plan, schedule
from service.digest.dashboard import build_dashboard
from service.digest.render import environment
from service.store import as_utc
from service.store import events as events_store
from service.store import users as users_store
from service.store.records import User

log = logging.getLogger(__name__)

bp = Blueprint("digest_web", __name__)

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def _rt():
    return current_app.extensions["calsync"]


def _page(template: str, status: int = 200, **context):
    html = environment().get_template(template).render(**context)
    return html, status, {"Content-Type": "text/html; charset=utf-8", **NO_STORE}


def _message(title: str, text: str, status: int):
    return _page("message.html", status, title=title, text=text)


def _event_by_key(db, key: str) -> dict | None:
    return events_store.by_key(db, key)


def _attends(user: User, event: dict) -> bool:
    """The signed-in user owns this calendar entry or is one of its attendees."""
    if event.get("user_id") == user.id:
        return True
    email = user.email.lower()
    emails = {(a.get("email") or "").lower() for a in event.get("attendees") or []}
    emails.add(((event.get("organizer") or {}).get("email") or "").lower())
    return bool(email) and email in emails


def _allowed_event(db, key: str) -> dict | None:
    """The event if the request carries a valid link for it or comes from an attending signed-in user."""
    signed = links.read_dashboard_token(_rt().settings, request.args.get("t"))
    if signed:
        user_id, graph_id = signed
        event = events_store.get(db, user_id, graph_id)
        return event if event is not None and str(event.get("_id")) == key else None
    user_id = session.get("user_id")
    user = users_store.get(db, user_id) if isinstance(user_id, str) else None
    event = _event_by_key(db, key) if user else None
    return event if event is not None and _attends(user, event) else None


@bp.get("/meetings/<key>")
def meeting_dashboard(key: str):
    """The dashboard of one meeting: attendees, their styles, the style-mix chart and group notes."""
    db = _rt().db
    event = _allowed_event(db, key)
    if event is None:
        return _message("Meeting not available",
                        "This link has expired or you are not signed in as one of the attendees.", 403)
    dash = build_dashboard(db, event)
    owner = users_store.get(db, event.get("user_id"))
    zone = schedule.user_zone(owner) if owner else timezones.zone(None)
    start, end = as_utc(event["start"]).astimezone(zone), as_utc(event["end"]).astimezone(zone)
    when = f"{start:%A %d %B %Y, %H:%M}–{end:%H:%M} ({zone.key})"
    return _page("meeting.html", title=event.get("subject") or "Meeting", dash=dash, when=when)


def _settings_user(db):
    """(user, token) for the settings pages: from the signed link, else the signed-in user."""
    token = request.values.get("t")
    user_id = links.read_settings_token(_rt().settings, token)
    if user_id is None and isinstance(session.get("user_id"), str):
        user_id = session["user_id"]
        token = links.settings_token(_rt().settings, user_id)
    user = users_store.get(db, user_id) if user_id else None
    return user, token


@bp.route("/digest/settings", methods=["GET", "POST"])
def digest_settings():
    """View and change when (and whether) the daily digest is sent."""
    rt = _rt()
    user, token = _settings_user(rt.db)
    if user is None:
        return _message("Link expired", "Open the settings link from a recent digest, or sign in again.", 403)
    error = None
    saved = False
    if request.method == "POST":
        error = _save_settings(rt, user, request.form)
        saved = error is None
        user = users_store.get(rt.db, user.id)
    digest = user.digest
    send_at = schedule.send_time(user, rt.settings.digest_default_time).strftime("%H:%M")
    return _page("settings.html", 400 if error else 200, title="Digest settings", user=user, digest=digest,
                 token=token, send_time=send_at, zone=schedule.user_zone(user).key, saved=saved, error=error)


def _save_settings(rt, user: User, form) -> str | None:
    """Validate and store the settings form; returns an error message or None."""
    clock = (form.get("time") or "").strip()
    parsed = schedule.parse_clock(clock, "")
    if clock and parsed.strftime("%H:%M") != clock[:5].zfill(5):
        return "Send time must look like 06:30."
    zone_name = (form.get("time_zone") or "").strip()
    iana = timezones.to_iana(zone_name) if zone_name else None
    if zone_name and iana == timezones.UTC_NAME and zone_name.upper() not in ("UTC", "GMT", "ETC/UTC"):
        return "Unknown time zone; use a name like Europe/Paris."
    users_store.set_digest_preferences(rt.db, user.id, enabled=form.get("enabled") == "1",
                                       send_empty=form.get("send_empty") == "1",
                                       time=parsed.strftime("%H:%M") if clock else None)
    if zone_name:
        users_store.choose_time_zone(rt.db, user.id, iana)  # the sync's inference leaves a chosen zone alone
    plan.reschedule(rt.db, user.id, rt.settings.digest_default_time)
    log.info("digest settings changed for user %s", user.id)
    return None


@bp.route("/digest/unsubscribe", methods=["GET", "POST"])
def digest_unsubscribe():
    """Confirm (GET) and unsubscribe (POST, including RFC 8058 one-click) from the daily digest."""
    rt = _rt()
    user, token = _settings_user(rt.db)
    if user is None:
        return _message("Link expired", "Open the unsubscribe link from a recent digest, or sign in again.", 403)
    if request.method == "POST":
        users_store.set_digest_preferences(rt.db, user.id, enabled=False)
        plan.reschedule(rt.db, user.id, rt.settings.digest_default_time)
        log.info("user %s unsubscribed from the digest", user.id)
    return _page("unsubscribe.html", title="Unsubscribe", user=user, token=token, done=request.method == "POST",
                 settings_link=links.settings_url(rt.settings, user.id))


