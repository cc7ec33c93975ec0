"""The "your week" page and the working-hours section of the settings page.

The page is opened by the signed settings link (``t``) or the signed-in session, like the other pages of a
person's own. Charts are SVG drawn on the server: no script, no inline style (the CSP allows neither); each has a
text equivalent (a table) beside it. Dates and times are in the person's zone, in words.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, request

from service import when
from service.digest import links
from service.digest.pages import _message, _page, _rt, _settings_page, _settings_user
from service.insights import days, network, timeside, week
from service.insights import people as people_io
from service.insights.people import frameworks, style_label
from service.insights.workhours import InvalidWorkingHours, from_doc, validated
from service.store import people as people_store
from service.store import users as users_store
from service.store import utcnow
from service.store import workhours as workhours_store
from service.web.csrf import csrf

log = logging.getLogger(__name__)

bp = Blueprint("week_pages", __name__)

CHART_WIDTH, CHART_HEIGHT, BAR_GAP, TOP = 560, 200, 16, 12


@dataclass
class Bar:
    label: str          # "Mon 2 Mar"
    x: float
    width: float
    meeting_y: float
    meeting_height: float
    working_y: float
    working_height: float
    words: str          # "3 h 30 min of meetings in 8 h of working hours"


def day_bars(report: week.WeekReport, now: datetime) -> tuple[list[Bar], float]:
    """One bar per day (meeting hours) over its working hours, scaled to the busiest; returns the bars and the
    scale's top in hours."""
    top = max([8.0] + [max(d.meeting_hours, d.working_hours) for d in report.days])
    width = (CHART_WIDTH - BAR_GAP * 8) / 7
    bars = []
    for n, load in enumerate(report.days):
        height = (CHART_HEIGHT - TOP) * load.meeting_hours / top
        working = (CHART_HEIGHT - TOP) * load.working_hours / top
        bars.append(Bar(when.day(load.day, now=now), BAR_GAP + n * (width + BAR_GAP), width,
                        CHART_HEIGHT - height, height, CHART_HEIGHT - working, working,
                        f"{when.duration(load.meeting_hours * 3600)} of meetings in "
                        f"{when.duration(load.working_hours * 3600)} of working hours"))
    return bars, top


def style_rows(found: network.Network) -> list[dict]:
    """Per framework with someone known: each style's share of meeting time as a bar (percent) and in words."""
    rows = []
    for name, shares in found.styles.items():
        known = {code: share for code, share in shares.items() if code != network.UNKNOWN}
        if not known:
            continue
        rows.append({"framework": frameworks()[name].get("label", name), "styles": [
            {"label": style_label(name, code), "percent": round(share * 100), "width": round(share * 400, 1)}
            for code, share in sorted(known.items(), key=lambda kv: -kv[1])],
            "unknown": round(shares.get(network.UNKNOWN, 0) * 100)})
    return rows


@bp.get("/insights/week")
def your_week():
    """A person's week: load, focus, after-hours, back-to-back runs, each day, 1:1 rhythm, recurring meetings,
    the style mix of who they meet."""
    rt = _rt()
    user, token = _settings_user(rt.db)
    if user is None:
        return _message("Link expired", "Open the link from a recent digest, or sign in again.", 403)
    zone = days.user_zone(user)
    now = utcnow()
    try:
        year, number = week.parse_week(request.args["week"]) if request.args.get("week") else \
            week.week_of(now, zone)
    except week.InvalidWeek as exc:
        return _message("No such week", f"{exc}. Weeks are written like 2026-W05.", 400)
    report = timeside.week_report(rt.db, user, year, number)
    horizon = now + timedelta(days=rt.settings.sync_days_ahead)
    bars, top = day_bars(report, now)
    found_network = timeside.network_report(rt.db, user, now)
    before = week.week_of(report.start - timedelta(days=3), zone)
    after = week.next_week(year, number)
    return _page("week.html", title=f"Your week {report.label}", user=user, report=report, bars=bars, top=top,
                 chart=(CHART_WIDTH, CHART_HEIGHT), zone_label=when.zone_label(zone), now=now,
                 first_day=when.day(report.start, now=now),
                 last_day=when.day(report.end - timedelta(hours=12), now=now),
                 rhythm=timeside.rhythm_report(rt.db, user, now), hygiene=timeside.hygiene_report(rt.db, user, horizon),
                 network=found_network, style_rows=style_rows(found_network),
                 hours=from_doc(workhours_store.get(rt.db, user.id)), weekdays=when.WEEKDAY_NAMES,
                 previous_link=links.week_url(rt.settings, user.id, f"{before[0]}-W{before[1]:02d}"),
                 next_link=links.week_url(rt.settings, user.id, f"{after[0]}-W{after[1]:02d}"),
                 home_link=links.home_url(rt.settings, user.id), settings_link=links.settings_url(rt.settings, user.id))


@bp.post("/digest/settings/working-hours")
@csrf.exempt  # authorised by the signed link token, as the rest of the settings page
def working_hours_settings():
    """Save working hours from the settings page: a 400 naming the field, and nothing stored, when wrong."""
    rt = _rt()
    user, token = _settings_user(rt.db)
    if user is None:
        return _message("Link expired", "Open the settings link from a recent digest, or sign in again.", 403)
    form = request.form
    try:
        hours = validated(form.get("wh_start", ""), form.get("wh_end", ""), form.getlist("wh_days"))
    except InvalidWorkingHours as exc:
        return _settings_page(rt, user, token, errors={f"wh_{exc.field}": _sentence(exc)}, section="working_hours",
                              form=form)
    workhours_store.save(rt.db, user.id, hours.as_doc())
    log.info("working hours changed on the settings page for user %s", user.id)
    return _settings_page(rt, users_store.get(rt.db, user.id), token, saved="working_hours")


@bp.route("/people/say", methods=["GET", "POST"])
@csrf.exempt  # authorised by the signed link token ``t``, which only the person described receives
def people_say():
    """Where a person in the directory chooses who may see tips about them: organization, restricted (the
    people they list, and their manager), private; and whether people from outside get tips about them."""
    rt = _rt()
    person_id = links.read_say_token(rt.settings, request.values.get("t"))
    person = people_store.get(rt.db, person_id) if person_id else None
    if person is None:
        return _message("Link expired", "Open the link from a recent mail.", 403)
    error, saved = None, False
    if request.method == "POST":
        form = request.form
        row = {"visibility": form.get("visibility", ""), "viewers": form.get("viewers", "").strip() or [],
               "external_tips": "true" if form.get("external_tips") == "1" else "false"}
        try:
            changes = people_io.validate_say(row)
        except people_io.InvalidPerson as exc:
            error = str(exc)
        else:
            person = people_store.replace_fields(rt.db, person["_id"], {"viewers": [], **changes}) or person
            saved = True
            log.info("person %s changed who sees tips about them", person["_id"])
    return _page("say.html", 400 if error else 200, title="Tips about you", person=person, error=error,
                 saved=saved, token=request.values.get("t"), home_link=None, settings_link=None)


def _sentence(exc: InvalidWorkingHours) -> str:
    return {"start": "Enter the start as a time of day like 09:00.",
            "end": "Enter an end like 17:00, after the start on the same day.",
            "days": "Tick at least one working day."}.get(exc.field, str(exc))
