"""The Monday look-ahead: a section of Monday's digest (``Digest.sections``) about the week it opens, in the
person's zone: its load, its heaviest day, first meetings with new people and overdue 1:1s, with tips. Every
channel renders it like any other section (email HTML and text, Teams, Slack).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pymongo.database import Database

from service import when
from service.config import Settings
from service.digest import links
from service.digest.build import Section, TipView
from service.insights import days, timeside, week
from service.store.records import User

KEY = "week-ahead"
SUMMARY_KEY = "week-summary"
MONDAY = 0
MAX_FIRST_MEETINGS = 5


def sections(db: Database, settings: Settings, user: User, day: date, now: datetime) -> list[Section]:
    """The look-ahead for a Monday's digest (nothing on other days)."""
    if day.weekday() != MONDAY:
        return []
    year, number, _ = day.isocalendar()
    ahead = timeside.look_ahead(db, user, year, number, now)
    last_year, last_number, _ = (day - timedelta(days=7)).isocalendar()
    last = timeside.week_report(db, user, last_year, last_number)
    found = [section(ahead, days.user_zone(user), now, links.week_url(settings, user.id, f"{year}-W{number:02d}"))]
    if last.meetings:
        found.append(summary(last, now, links.week_url(settings, user.id, f"{last_year}-W{last_number:02d}")))
    return found


def summary(report: week.WeekReport, now: datetime, link: str) -> Section:
    """Last week in a few lines (pure): time in meetings, focus, after-hours, double booking."""
    lines = [f"{when.count(report.meetings, 'meeting')}, {when.duration(report.meeting * 3600)} in meetings, "
             f"{when.duration(report.focus * 3600)} of focus time and {when.duration(report.fragmented * 3600)} in "
             "fragments under 2 hours."]
    if report.after_hours or report.double_booked:
        lines.append(f"{when.duration(report.after_hours * 3600)} of meetings after hours, "
                     f"{when.duration(report.double_booked * 3600)} double-booked.")
    return Section(SUMMARY_KEY, f"Your last week ({week_label(report)})", lines, [], ("See last week", link))


def section(ahead: timeside.LookAhead, zone: ZoneInfo, now: datetime, link: str) -> Section:
    """The section in words (pure): load, heaviest day, back-to-back and after-hours, first meetings, 1:1s."""
    report = ahead.report
    lines = [f"{when.count(report.meetings, 'meeting')}, {when.duration(report.meeting * 3600)} in meetings; "
             f"{when.duration(report.focus * 3600)} of focus time in blocks of 2 hours or more."]
    heaviest = report.heaviest_day
    if heaviest:
        lines.append(f"Heaviest day: {when.day(heaviest.day, now=now)} "
                     f"({when.duration(heaviest.meeting_hours * 3600)} of meetings).")
    extra = []
    if report.back_to_back:
        extra.append(when.count(len(report.back_to_back), "back-to-back run"))
    if report.after_hours:
        extra.append(f"{when.duration(report.after_hours * 3600)} of meetings after hours")
    if report.double_booked:
        extra.append(f"{when.duration(report.double_booked * 3600)} double-booked")
    if extra:
        lines.append("Watch for: " + ", ".join(extra) + ".")
    tips = [TipView(tip) for tip in ahead.tips]
    for first in ahead.first_meetings[:MAX_FIRST_MEETINGS]:
        lines.append(f"First meeting with {first.name}: {when.day(first.at, now=now)}, {when.clock(first.at, zone)}, "
                     f"{first.subject}.")
        if first.tip:
            tips.append(TipView(first.tip, first.person_id))
    for late in ahead.overdue:
        weeks = round(late.overdue_days / 7)
        gap = f"{when.count(weeks, 'week')} overdue" if weeks else "overdue"
        lines.append(f"Your 1:1 with {late.name} is {gap} (usually every {late.usual_days:g} days).")
        if late.tip:
            tips.append(TipView(late.tip, late.person_id))
    return Section(KEY, f"Your week ahead ({week_label(report)})", lines, tips, ("See your week", link))


def week_label(report: week.WeekReport) -> str:
    return f"week {report.iso_week}"
