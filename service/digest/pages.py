"""Web pages: meeting dashboards (signed link or signed-in attendee) with the owner's exclusion controls,
and the user's settings (digest, calendars) and unsubscribe.

State changes are POSTs that carry a signed token for the user (the dashboard token, or the settings token);
a third-party page cannot obtain one, so the token is also the CSRF defence, as for the settings form.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, redirect, request, session

from service import inputs, timezones
from service.digest import links, plan, schedule
from service.digest.render import environment
from service.insights import days, meetings, org
from service.insights.dashboard import build_dashboard
from service.store import as_utc, exclusions
from service.store import calendars as calendar_store
from service.store import events as events_store
from service.store import users as users_store
from service.store.records import PREP_MIN_SIZE, PREP_MINUTES, PrepMeetings, User
from service.sync.requests import request_sync
from service.web.csrf import csrf

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


def _allowed_event(db, key: str) -> tuple[dict | None, bool]:
    """(event, is_owner): the event if the request carries a valid link for it or comes from an attending
    signed-in user; ``is_owner`` when it is the calendar owner asking (only they may exclude it)."""
    signed = links.read_dashboard_token(_rt().settings, request.values.get("t"))
    if signed:
        user_id, graph_id = signed
        event = events_store.get(db, user_id, graph_id)
        return (event, True) if event is not None and str(event.get("_id")) == key else (None, False)
    user_id = session.get("user_id")
    user = users_store.get(db, user_id) if isinstance(user_id, str) else None
    event = _event_by_key(db, key) if user else None
    if event is None or not _attends(user, event):
        return None, False
    return event, event.get("user_id") == user.id


def _exclusion_state(db, event: dict) -> dict:
    """Whether the meeting (any copy of it) or its series is excluded by its owner."""
    excluded = exclusions.for_user(db, event["user_id"])
    copies = events_store.by_ical_uids(db, event["user_id"], [event["ical_uid"]]) if event.get("ical_uid") else []
    same = [c for c in copies if meetings.meeting_key(c) == meetings.meeting_key(event)] or [event]
    return {"meeting": any((c.get("ical_uid") or c.get("graph_id")) in excluded.meetings for c in same),
            "series": any((c.get("series_master_id") or "") in excluded.series for c in same),
            "has_series": bool(event.get("series_master_id"))}


def _when(db, event: dict) -> str:
    owner = users_store.get(db, event.get("user_id"))
    zone = days.user_zone(owner) if owner else timezones.zone(None)
    start, end = as_utc(event["start"]).astimezone(zone), as_utc(event["end"]).astimezone(zone)
    return f"{start:%A %d %B %Y, %H:%M}–{end:%H:%M} ({zone.key})"


NOT_AVAILABLE = ("Meeting not available",
                 "This link has expired or you are not signed in as one of the attendees.")


@bp.get("/meetings/<key>")
def meeting_dashboard(key: str):
    """The dashboard of one meeting: attendees, their styles, the style-mix chart and group notes."""
    db = _rt().db
    event, is_owner = _allowed_event(db, key)
    if event is None:
        return _message(*NOT_AVAILABLE, 403)
    state = _exclusion_state(db, event)
    excluded = state["meeting"] or state["series"]
    if excluded and not is_owner:
        return _message(*NOT_AVAILABLE, 403)   # its owner keeps it out of insights
    holder = users_store.get(db, event.get("user_id"))
    dash = None if excluded else build_dashboard(db, event, org.for_user(db, holder) if holder else None)
    token = links.dashboard_token(_rt().settings, event["user_id"], event["graph_id"]) if is_owner else None
    return _page("meeting.html", title=meetings.subject_of(event), subject=meetings.subject_of(event), dash=dash,
                 event=event, when=_when(db, event), owner=is_owner, token=token, state=state, key=key)


@bp.route("/meetings/<key>/exclude", methods=["GET", "POST"])
@csrf.exempt  # authorised by the signed dashboard token ``t`` the form carries
def exclude_meeting(key: str):
    """The owner keeps a meeting, or its whole series, out of insights (GET asks, POST does; and undoes)."""
    db = _rt().db
    event, is_owner = _allowed_event(db, key)
    if event is None or not is_owner:
        return _message(*NOT_AVAILABLE, 403)
    token = links.dashboard_token(_rt().settings, event["user_id"], event["graph_id"])
    if request.method == "GET":
        return _page("exclude.html", title="Keep out of insights", subject=meetings.subject_of(event),
                     when=_when(db, event), token=token, state=_exclusion_state(db, event), key=key)
    if links.read_dashboard_token(_rt().settings, request.form.get("t")) is None:
        return _message("Please try again", "This form expired. Open the meeting again and retry.", 403)
    kind, action = request.form.get("kind"), request.form.get("action")
    target = {exclusions.MEETING: event.get("ical_uid") or event.get("graph_id"),
              exclusions.SERIES: event.get("series_master_id")}.get(kind)
    if action not in ("exclude", "include") or not target:
        return _message("Please try again", "Choose this meeting or its series.", 400)
    if action == "exclude":
        exclusions.add(db, event["user_id"], kind, target)
    else:
        exclusions.remove(db, event["user_id"], kind, target)
    log.info("user %s %sd a %s from insights", event["user_id"], action, kind)
    return redirect(f"/meetings/{key}?t={token}", 303)


def _settings_user(db):
    """(user, token) for the settings pages: from the signed link, else (to show a page) the signed-in user.

    A change (POST) needs the link token ``t``: it is what stops a forged cross-site form, in place of a
    CSRF token (the pages put one in their forms, for the signed-in user too).
    """
    token = request.values.get("t")
    user_id = links.read_settings_token(_rt().settings, token)
    if user_id is None and request.method == "GET" and isinstance(session.get("user_id"), str):
        user_id = session["user_id"]
        token = links.settings_token(_rt().settings, user_id)
    user = users_store.get(db, user_id) if user_id else None
    return user, token


@bp.route("/digest/settings", methods=["GET", "POST"])
@csrf.exempt  # authorised by the signed link token (see _settings_user)
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
    return _settings_page(rt, user, token, saved=saved, error=error)


def _settings_page(rt, user: User, token: str, *, saved: bool = False, error: str | None = None,
                   calendars_saved: bool = False):
    send_at = schedule.send_time(user, rt.settings.digest_default_time).strftime("%H:%M")
    return _page("settings.html", 400 if error else 200, title="Settings", user=user, digest=user.digest,
                 prep=user.prep, weekdays=WEEKDAY_NAMES, prep_choices=PREP_CHOICES, prep_minutes=PREP_MINUTES,
                 prep_sizes=PREP_MIN_SIZE,
                 token=token, send_time=send_at, zone=days.user_zone(user).key, saved=saved, error=error,
                 calendars=calendar_store.for_user(rt.db, user.id), calendars_saved=calendars_saved)


@bp.post("/digest/settings/calendars")
@csrf.exempt  # authorised by the signed link token (see _settings_user)
def calendar_settings():
    """Turn calendars on and off: a calendar turned off has its meetings deleted, one turned on is read."""
    rt = _rt()
    user, token = _settings_user(rt.db)
    if user is None:
        return _message("Link expired", "Open the settings link from a recent digest, or sign in again.", 403)
    wanted = set(request.form.getlist("calendar"))
    changed = []
    for calendar in calendar_store.for_user(rt.db, user.id):
        enabled = calendar.key in wanted
        if enabled != calendar.enabled and calendar_store.set_enabled(rt.db, user.id, calendar.calendar_id, enabled):
            changed.append(calendar)
            if not enabled:
                events_store.delete_for_calendar(rt.db, user.id, calendar.calendar_id)
    if changed:
        request_sync(rt.redis, user.id, "calendars-changed")   # reads those turned on, re-deletes those turned off
        log.info("user %s turned %d calendar(s) on or off", user.id, len(changed))
    return _settings_page(rt, users_store.get(rt.db, user.id), token, calendars_saved=True)


WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
PREP_CHOICES = ((PrepMeetings.ALL, "All meetings"), (PrepMeetings.ONE_ON_ONE, "One-to-ones only"),
                (PrepMeetings.EXTERNAL, "Meetings with people from outside my organization"),
                (PrepMeetings.MIN_SIZE, "Meetings of at least this many people:"))


def _whole(raw: str | None, low: int, high: int) -> int | None:
    try:
        return inputs.whole_number((raw or "").strip(), "number", low, high)
    except inputs.BadInput:
        return None


def _prep_form(form) -> tuple[dict, str | None]:
    """The prep fields of the settings form, as set_prep_preferences arguments (absent fields stay as they are)."""
    changes: dict = {}
    if "prep_minutes" in form:
        raw = form.get("prep_minutes", "").strip().lower()
        minutes = None if raw in ("", "off", "0") else _whole(raw, *PREP_MINUTES)
        if raw not in ("", "off", "0") and minutes is None:
            return {}, f"Prep mails go {PREP_MINUTES[0]} to {PREP_MINUTES[1]} minutes before a meeting, or off."
        changes["minutes"] = minutes
    if "prep_meetings" in form:
        if form.get("prep_meetings") not in PrepMeetings._value2member_map_:
            return {}, "Choose which meetings get a prep mail."
        changes["meetings"] = form.get("prep_meetings")
    if (form.get("prep_min_size") or "").strip():
        size = _whole(form.get("prep_min_size"), *PREP_MIN_SIZE)
        if size is None:
            return {}, f"The meeting size must be a number from {PREP_MIN_SIZE[0]} to {PREP_MIN_SIZE[1]}."
        changes["min_size"] = size
    return changes, None


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
    days = [_whole(d, 0, 6) for d in form.getlist("days")]
    if None in days:
        return "Choose the digest days from Monday to Sunday."
    prep, error = _prep_form(form)
    if error:
        return error
    # No day ticked leaves the days as they were: a digest goes out on at least one day (or is turned off).
    users_store.set_digest_preferences(rt.db, user.id, enabled=form.get("enabled") == "1",
                                       send_empty=form.get("send_empty") == "1",
                                       time=parsed.strftime("%H:%M") if clock else None, days=days or None)
    users_store.set_prep_preferences(rt.db, user.id, **prep)
    if zone_name:
        users_store.choose_time_zone(rt.db, user.id, iana)  # the sync's inference leaves a chosen zone alone
    plan.reschedule(rt.db, user.id, rt.settings.digest_default_time)
    log.info("digest settings changed for user %s", user.id)
    return None


@bp.route("/digest/unsubscribe", methods=["GET", "POST"])
@csrf.exempt  # RFC 8058 one-click: the mail provider POSTs the link, with no session and no form token
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


