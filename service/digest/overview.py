"""What a person's own page shows: their next meetings with dashboard links, when the next digest and prep mail go
out, what they keep out of insights (with an undo), and the mails they get where."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pymongo.database import Database

from service import when
from service.config import Settings
from service.digest import links, prep, schedule
from service.insights import days, meetings, org
from service.insights.matching import Directory, attendee_emails, match_attendees, self_emails
from service.store import as_utc, exclusions, utcnow
from service.store import events as events_store
from service.store.records import PrepMeetings, User

AHEAD = timedelta(days=7)
MAX_MEETINGS = 12
PREP_WHICH = {PrepMeetings.ALL: "every meeting with someone from the people directory",
              PrepMeetings.ONE_ON_ONE: "one-to-ones", PrepMeetings.EXTERNAL: "meetings with people from outside",
              PrepMeetings.MIN_SIZE: "meetings of at least {n} people"}


@dataclass
class Upcoming:
    subject: str
    when: str                 # "Mon 14 Dec, 09:00–10:00 (in 2 hours)"
    people: int               # others in it (rooms and the user left out)
    link: str                 # the dashboard (signed for the user)
    online: bool = False


@dataclass
class KeptOut:
    kind: str                 # meeting | series
    what: str                 # its subject, or how it is known
    key: str | None           # a stored event's id, for the undo form (None when no copy is stored any more)
    token: str | None
    since: str


@dataclass
class Overview:
    zone: str
    upcoming: list[Upcoming] = field(default_factory=list)
    next_digest: str = ""     # "Tue 15 Dec, 06:30 (in 13 hours)", or why none
    digest_plan: str = ""     # "Mon to Fri at 06:30"
    next_prep: str = ""       # "Mon 14 Dec, 08:45 (in 2 hours), before Quarterly planning", or why none
    prep_plan: str = ""       # "15 minutes before every meeting with someone from the people directory"
    kept_out: list[KeptOut] = field(default_factory=list)
    preview_link: str = ""


def build(db: Database, settings: Settings, user: User, now: datetime | None = None) -> Overview:
    now = (now or utcnow()).astimezone(UTC)
    zone = days.user_zone(user)
    found = meetings.in_window(db, user.id, now, now + AHEAD)
    timed = [e for e in found if not e.get("is_all_day") and not e.get("is_cancelled")]
    directory = Directory.for_emails(db, attendee_emails(timed) | {user.email})
    me = self_emails(user, directory)
    view = Overview(zone.key, preview_link=links.preview_url(settings, user.id))
    for event in timed[:MAX_MEETINGS]:
        view.upcoming.append(Upcoming(
            meetings.subject_of(event), when.span(event["start"], event["end"], zone, now)
            + (f" ({when.ago(as_utc(event['start']), now)})" if as_utc(event["start"]) > now else " (now)"),
            len(match_attendees(event, me, directory)),
            links.dashboard_url(settings, str(event["_id"]), user.id, event["graph_id"]),
            bool(event.get("is_online_meeting"))))
    _digest(view, settings, user, zone, now)
    _prep(view, db, user, timed, directory, now, zone)
    view.kept_out = _kept_out(db, settings, user, zone, now)
    return view


def _digest(view: Overview, settings: Settings, user: User, zone, now: datetime) -> None:
    send_at = schedule.send_time(user, settings.digest_default_time).strftime("%H:%M")
    view.digest_plan = f"{when.weekdays(user.digest.days)} at {send_at}" + (
        "" if user.digest.send_empty else ", on days with meetings")
    if not user.digest.enabled:
        view.next_digest = "off: you unsubscribed (turn it back on in settings)"
    elif not user.connected:
        view.next_digest = "none until your calendar is connected again"
    elif user.digest.next_at is not None and user.digest.next_at <= now:
        view.next_digest = "due now: it goes out within a minute"
    elif user.digest.next_at is not None:
        view.next_digest = when.moment(user.digest.next_at, zone, now)
    else:
        view.next_digest = "not planned yet"


def _prep(view: Overview, db: Database, user: User, timed: list[dict], directory: Directory, now: datetime,
          zone) -> None:
    if not user.prep.enabled:
        view.prep_plan, view.next_prep = "off", "none: prep mails are off"
        return
    which = PREP_WHICH[user.prep.meetings].format(n=user.prep.min_size)
    view.prep_plan = f"{user.prep.minutes} minutes before {which}"
    organization = org.for_user(db, user)
    for event in timed:
        due = as_utc(event["start"]) - timedelta(minutes=user.prep.minutes)
        if due > now and prep.meeting_reason(user, event, directory, organization, now) is None:
            view.next_prep = f"{when.moment(due, zone, now)}, before {meetings.subject_of(event)}"
            return
    view.next_prep = "none in the next 7 days"


def _kept_out(db: Database, settings: Settings, user: User, zone, now: datetime) -> list[KeptOut]:
    found = []
    for row in exclusions.listed(db, user.id)[:50]:
        if row["kind"] == exclusions.SERIES:
            event = events_store.one_of_series(db, user.id, row["key"])
        else:
            copies = events_store.by_ical_uids(db, user.id, [row["key"]]) or \
                [e for e in [events_store.get(db, user.id, row["key"])] if e]
            event = copies[0] if copies else None
        what = meetings.subject_of(event) if event else "a meeting no longer in your calendar"
        if event and row["kind"] == exclusions.MEETING:
            what += f" ({when.day(event['start'], zone, now)})"
        found.append(KeptOut(row["kind"], what, str(event["_id"]) if event else None,
                             links.dashboard_token(settings, user.id, event["graph_id"]) if event else None,
                             when.moment(row.get("created_at"), zone, now, missing="")))
    return found
