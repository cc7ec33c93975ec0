"""Web pages: meeting dashboards (signed link or signed-in attendee) with the owner's exclusion controls,
and the user's settings (digest, calendars) and unsubscribe.

State changes are POSTs that carry a signed token for the user (the dashboard token, or the settings token);
a third-party page cannot obtain one, so the token is also the CSRF defence, as for the settings form.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from flask import Blueprint, current_app, redirect, request, session

from service import inputs, timezones, when
from service.channels import status as channel_status
from service.digest import links, plan, schedule, send
from service.digest.render import environment, render_html
from service.insights import days, meetings, org, tips, workhours
from service.insights.dashboard import build_dashboard
from service.store import as_utc, exclusions
from service.store import calendars as calendar_store
from service.store import coaching as coaching_store
from service.store import events as events_store
from service.store import users as users_store
from service.store import workhours as workhours_store
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


def _when(db, event: dict, viewer: User | None = None) -> str:
    """"Wed 1 Jul, 17:00–18:00 (in 2 hours) · times in Europe/Paris", in the viewer's zone (else the owner's)."""
    reader = viewer or users_store.get(db, event.get("user_id"))
    zone = days.user_zone(reader) if reader else timezones.zone(None)
    start, end = as_utc(event["start"]), as_utc(event["end"])
    now = datetime.now(UTC)
    soon = f" ({when.ago(start, now)})" if abs(start - now) < when.RELATIVE_WITHIN else ""
    return f"{when.span(start, end, zone, now)}{soon} · times in {zone.key}"


def _viewer(db, event: dict, is_owner: bool) -> User | None:
    """Who is looking: the signed-in user, else (a signed link) the calendar's owner."""
    user_id = session.get("user_id")
    if isinstance(user_id, str):
        user = users_store.get(db, user_id)
        if user is not None:
            return user
    return users_store.get(db, event.get("user_id")) if is_owner else None


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
    viewer = _viewer(db, event, is_owner)
    dash = None if excluded else build_dashboard(db, event, org.for_user(db, holder) if holder else None, viewer)
    token = links.dashboard_token(_rt().settings, event["user_id"], event["graph_id"]) if is_owner else None
    settings = _rt().settings
    return _page("meeting.html", title=meetings.subject_of(event), subject=meetings.subject_of(event), dash=dash,
                 event=event, when=_when(db, event, viewer), owner=is_owner, token=token, state=state, key=key,
                 wide=True, when_count=when.count,
                 home_link=links.home_url(settings, viewer.id) if viewer else None,
                 settings_link=links.settings_url(settings, viewer.id) if viewer else None)


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
                     when=_when(db, event), token=token, state=_exclusion_state(db, event), key=key,
                     home_link=links.home_url(_rt().settings, event["user_id"]))
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
    """View and change the digest, the time zone and meeting prep: one form (and one Save) per section."""
    rt = _rt()
    user, token = _settings_user(rt.db)
    if user is None:
        return _message("Link expired", "Open the settings link from a recent digest, or sign in again.", 403)
    errors: dict[str, str] = {}
    section = None
    saved = "channels" if request.args.get("saved") == "channels" else None   # /channels/settings sent us back
    if request.method == "POST":
        section = request.form.get("section") or None
        errors = _save_settings(rt, user, request.form, section)
        saved = None if errors else (section or "digest")
        user = users_store.get(rt.db, user.id)
    return _settings_page(rt, user, token, saved=saved, errors=errors, section=section,
                          form=request.form if errors else {})


SECTION_TITLES = {"digest": "Daily digest", "zone": "Time zone", "prep": "Meeting prep",
                  "working_hours": "Working hours"}


def _settings_page(rt, user: User, token: str, *, saved: str | None = None, errors: dict | None = None,
                   section: str | None = None, form=None, calendars_saved: bool = False):
    send_at = schedule.send_time(user, rt.settings.digest_default_time).strftime("%H:%M")
    zone = days.user_zone(user)
    return _page("settings.html", 400 if errors else 200, title="Settings", user=user, digest=user.digest,
                 prep=user.prep, weekdays=when.WEEKDAY_NAMES, prep_choices=PREP_CHOICES, prep_minutes=PREP_MINUTES,
                 prep_sizes=PREP_MIN_SIZE, token=token, send_time=send_at, zone=zone.key,
                 zone_label=f"{when.zone_label(zone)}, {when.clock(datetime.now(UTC), zone)} there",
                 zones=timezones.iana_names(), saved=saved, errors=errors or {}, form=form or {},
                 failed_section=section, section_titles=SECTION_TITLES,
                 calendars=calendar_store.for_user(rt.db, user.id), calendars_saved=calendars_saved,
                 channels=channel_status.view(rt.db, user),
                 working_hours=workhours.from_doc(workhours_store.get(rt.db, user.id)),
                 outlook_hours=rt.settings.outlook_working_hours, week_link=links.week_url(rt.settings, user.id),
                 say_link=links.say_url_for(rt.db, rt.settings, user.email),
                 home_link=links.home_url(rt.settings, user.id), settings_link=links.settings_url(rt.settings, user.id))


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


PREP_CHOICES = ((PrepMeetings.ALL, "All meetings"), (PrepMeetings.ONE_ON_ONE, "One-to-ones only"),
                (PrepMeetings.EXTERNAL, "Meetings with people from outside my organization"),
                (PrepMeetings.MIN_SIZE, "Meetings of at least this many people"))


def _whole(raw: str | None, low: int, high: int) -> int | None:
    try:
        return inputs.whole_number((raw or "").strip(), "number", low, high)
    except inputs.BadInput:
        return None


def _prep_form(form) -> tuple[dict, dict[str, str]]:
    """The prep fields of the settings form, as set_prep_preferences arguments (absent fields stay as they are),
    and an error per field at fault."""
    changes: dict = {}
    errors: dict[str, str] = {}
    if "prep_minutes" in form:
        raw = form.get("prep_minutes", "").strip().lower()
        minutes = None if raw in ("", "off", "0") else _whole(raw, *PREP_MINUTES)
        if raw not in ("", "off", "0") and minutes is None:
            errors["prep_minutes"] = (f"Prep mails go {PREP_MINUTES[0]} to {PREP_MINUTES[1]} minutes before a "
                                      "meeting; leave it empty for none.")
        changes["minutes"] = minutes
    if "prep_meetings" in form:
        if form.get("prep_meetings") not in PrepMeetings._value2member_map_:
            errors["prep_meetings"] = "Choose which meetings get a prep mail."
        changes["meetings"] = form.get("prep_meetings")
    if (form.get("prep_min_size") or "").strip():
        size = _whole(form.get("prep_min_size"), *PREP_MIN_SIZE)
        if size is None:
            errors["prep_min_size"] = f"The meeting size is a number from {PREP_MIN_SIZE[0]} to {PREP_MIN_SIZE[1]}."
        changes["min_size"] = size
    return changes, errors


def _digest_form(form) -> tuple[dict, dict[str, str]]:
    """The digest fields: on/off, send time, days, empty days; and an error per field at fault."""
    errors: dict[str, str] = {}
    clock = (form.get("time") or "").strip()
    parsed = schedule.parse_clock(clock, "")
    if clock and parsed.strftime("%H:%M") != clock[:5].zfill(5):
        errors["time"] = "Enter a time of day like 06:30."
    chosen = [_whole(d, 0, 6) for d in form.getlist("days")]
    if None in chosen:
        errors["days"] = "Choose the digest days from Monday to Sunday."
    # No day ticked leaves the days as they were: a digest goes out on at least one day (or is turned off).
    return {"enabled": form.get("enabled") == "1", "send_empty": form.get("send_empty") == "1",
            "time": parsed.strftime("%H:%M") if clock else None, "days": chosen or None}, errors


def _zone_form(form) -> tuple[str | None, dict[str, str]]:
    zone_name = (form.get("time_zone") or "").strip()
    iana = timezones.to_iana(zone_name) if zone_name else None
    if zone_name and iana == timezones.UTC_NAME and zone_name.upper() not in ("UTC", "GMT", "ETC/UTC"):
        return None, {"time_zone": "Unknown time zone: pick one from the list, like Europe/Paris."}
    return iana, {}


def _save_settings(rt, user: User, form, section: str | None) -> dict[str, str]:
    """Validate and store one section of the settings form (all of them when ``section`` is None, as older
    forms and scripts send); returns an error per field at fault, and stores nothing then."""
    wanted = (section,) if section in SECTION_TITLES else ("digest", "zone", "prep")
    digest, errors = _digest_form(form) if "digest" in wanted else ({}, {})
    iana, zone_errors = _zone_form(form) if "zone" in wanted else (None, {})
    prep, prep_errors = _prep_form(form) if "prep" in wanted else ({}, {})
    errors = {**errors, **zone_errors, **prep_errors}
    if errors:
        return errors
    if "digest" in wanted:
        users_store.set_digest_preferences(rt.db, user.id, **digest)
    users_store.set_prep_preferences(rt.db, user.id, **prep)
    if iana:
        users_store.choose_time_zone(rt.db, user.id, iana)  # the sync's inference leaves a chosen zone alone
    plan.reschedule(rt.db, user.id, rt.settings.digest_default_time)
    log.info("settings (%s) changed for user %s", ", ".join(wanted), user.id)
    return {}


LISTS = {"digest": "the daily digest", "prep": "meeting prep mails"}


@bp.route("/digest/unsubscribe", methods=["GET", "POST"])
@csrf.exempt  # RFC 8058 one-click: the mail provider POSTs the link, with no session and no form token
def digest_unsubscribe():
    """Confirm (GET) and unsubscribe (POST, including RFC 8058 one-click) from the daily digest, or with
    ``list=prep`` from meeting prep mails."""
    rt = _rt()
    user, token = _settings_user(rt.db)
    if user is None:
        return _message("Link expired", "Open the unsubscribe link from a recent digest, or sign in again.", 403)
    what = request.args.get("list", "digest")
    if what not in LISTS:
        return _message("Please try again", "This unsubscribe link is not complete.", 400)
    if request.method == "POST":
        if what == "prep":
            users_store.set_prep_preferences(rt.db, user.id, minutes=None)
        else:
            users_store.set_digest_preferences(rt.db, user.id, enabled=False)
            plan.reschedule(rt.db, user.id, rt.settings.digest_default_time)
        log.info("user %s unsubscribed from %s", user.id, what)
    return _page("unsubscribe.html", title="Unsubscribe", user=user, token=token, done=request.method == "POST",
                 what=what, list_name=LISTS[what], settings_link=links.settings_url(rt.settings, user.id),
                 home_link=links.home_url(rt.settings, user.id))


@bp.route("/digest/tips", methods=["GET", "POST"])
@csrf.exempt  # authorised by the signed feedback token ``t`` (it names the user and the tip)
def tip_feedback():
    """"Was this tip useful?": GET asks (mail scanners follow every link), POST records the verdict, which the
    tip choice reads (a tip marked not useful is not shown again)."""
    rt = _rt()
    found = links.read_feedback_token(rt.settings, request.values.get("t"))
    if found is None:
        return _message("Link expired", "This tip's link is too old. Tips in newer mails have fresh links.", 403)
    user_id, tip_key, person_id = found
    user = users_store.get(rt.db, user_id)
    if user is None:
        return _message("Link expired", "calsync holds no data about you any more.", 403)
    verdict = request.values.get("v") or None
    if verdict is not None and verdict not in coaching_store.VERDICTS:
        return _message("Please try again", "Choose useful or not useful.", 400)
    recorded = None
    if request.method == "POST":
        if verdict is None:
            return _message("Please try again", "Choose useful or not useful.", 400)
        coaching_store.record_feedback(rt.db, user.id, tip_key, person_id, verdict)
        log.info("user %s marked a tip %s", user.id, verdict)
        recorded = verdict
    return _page("tip_feedback.html", title="Was this tip useful?", token=request.values.get("t"), verdict=verdict,
                 recorded=recorded, tip=tips.by_key(tip_key), home_link=links.home_url(rt.settings, user.id),
                 settings_link=links.settings_url(rt.settings, user.id))


PREVIEW_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
                  "form-action 'none'; frame-ancestors 'none'")


@bp.get("/digest/preview")
def digest_preview():
    """The digest of a local day (``date``, default today) as a web page: what the mail would say, never sent,
    nothing recorded. The mail's HTML carries inline styles (mail clients need them), so this one page allows
    inline style, and no script at all."""
    rt = _rt()
    user, _token = _settings_user(rt.db)
    if user is None:
        return _message("Link expired", "Open the link from a recent digest, or sign in again.", 403)
    today = datetime.now(UTC).astimezone(days.user_zone(user)).date()
    raw = (request.args.get("date") or "").strip()
    try:
        day = date.fromisoformat(raw) if raw else today
    except ValueError:
        return _message("Please try again", "The date must look like 2026-07-01.", 400)
    if abs((day - today).days) > 31:
        return _message("Please try again", "Previews go up to 31 days either side of today.", 400)
    digest = send.compose(rt.db, rt.settings, user, day, record=False, preview=True)
    return render_html(digest), 200, {"Content-Type": "text/html; charset=utf-8", **NO_STORE,
                                      "Content-Security-Policy": PREVIEW_POLICY}
