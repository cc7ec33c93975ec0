"""What goes in a user's digest for one local day: a pure function of the user, events and directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from service import timezones
from service.insights import days
from service.insights.collaborators import Collaborator
from service.insights.matching import (
    HIDDEN_NOTE,
    Directory,
    Match,
    attendees_hidden,
    match_attendees,
    self_emails,
    user_response,
)
from service.insights.meetings import subject_of
from service.insights.org import Organization
from service.insights.people import style_label, styles
from service.insights.tips import Tip, tips_for
from service.store import as_utc
from service.store.records import User


@dataclass
class AttendeeView:
    name: str
    email: str
    matched: bool
    styles: list[str]            # human labels, e.g. "DISC D (Dominance)"
    tips: list[Tip]
    external: bool = False       # outside the user's organization (service.insights.org)


class SplitsAttendees:
    """``internal`` and ``external`` for a view with ``attendees`` (a digest's meeting, a prep mail)."""

    attendees: list[AttendeeView]

    @property
    def internal(self) -> list[AttendeeView]:
        return [a for a in self.attendees if not a.external]

    @property
    def external(self) -> list[AttendeeView]:
        return [a for a in self.attendees if a.external]


@dataclass
class MeetingView(SplitsAttendees):
    event_id: str                # the stored event's graph_id
    key: str                     # the stored event's document id: the dashboard URL's <id>
    subject: str
    start: datetime              # local, aware
    end: datetime
    all_day: bool
    online: bool
    attendees: list[AttendeeView]
    link: str | None = None      # the dashboard URL, filled in by the sender
    exclude_link: str | None = None   # where the user keeps it out of insights, filled in by the sender
    note: str | None = None      # "attendee list hidden by the organizer"


@dataclass
class Digest:
    user_id: str
    email: str
    name: str
    local_date: date
    zone: str
    meetings: list[MeetingView]
    all_day: list[MeetingView]
    meet_most: list[Collaborator] = field(default_factory=list)
    coaching: list = field(default_factory=list)    # service.insights.coaching.Suggestion, filled in by the sender
    settings_link: str | None = None
    unsubscribe_link: str | None = None

    @property
    def empty(self) -> bool:
        return not self.meetings and not self.all_day


def shown(event: dict, me: set[str]) -> bool:
    """Cancelled meetings and those the user declined are left out."""
    return not event.get("is_cancelled") and user_response(event, me) != "declined"


def all_day_dates(event: dict, fallback: ZoneInfo) -> tuple[date, date]:
    """[first, last+1) local dates of an all-day event, read in the zone it was created in."""
    zone = timezones.zone(event.get("start_tz")) if event.get("start_tz") else fallback
    first = as_utc(event["start"]).astimezone(zone).date()
    last = as_utc(event["end"]).astimezone(zone).date()
    return first, max(last, first + timedelta(days=1))


def on_day(event: dict, zone: ZoneInfo, day: date) -> bool:
    """Whether an event belongs on the local day's agenda."""
    if event.get("is_all_day"):
        first, end = all_day_dates(event, zone)
        return first <= day < end
    start, end = days.day_bounds(zone, day)
    return as_utc(event["start"]) < end and as_utc(event["end"]) > start


def attendee_view(match: Match, my_styles: dict[str, str], seed: str, org: Organization | None = None) -> AttendeeView:
    their = styles(match.person)
    labels = [style_label(framework, code) for framework, code in their.items()]
    return AttendeeView(match.name, match.email, match.person is not None, labels,
                        tips_for(match.person, my_styles, seed) if match.person else [],
                        bool(org and org.is_external(match.email)))


def build_digest(
    user: User,
    day: date,
    events: list[dict],
    directory: Directory,
    meet_most: list[Collaborator] | None = None,
    zone: ZoneInfo | None = None,
    org: Organization | None = None,
) -> Digest:
    """The digest for ``user`` on local ``day``: meetings in local time, attendees with tips."""
    zone = zone or days.user_zone(user)
    me = self_emails(user, directory)
    my_styles = styles(directory.person(user.email))
    meetings, all_day = [], []
    for event in sorted(events, key=lambda e: (as_utc(e["start"]), e.get("subject") or "")):
        if not shown(event, me) or not on_day(event, zone, day):
            continue
        seed = f"{day.isoformat()}:{event.get('graph_id')}"
        attendees = [attendee_view(m, my_styles, f"{seed}:{m.email}", org)
                     for m in match_attendees(event, me, directory)]
        view = MeetingView(
            event_id=event.get("graph_id") or "",
            key=str(event.get("_id") or event.get("graph_id") or ""),
            subject=subject_of(event),
            start=as_utc(event["start"]).astimezone(zone),
            end=as_utc(event["end"]).astimezone(zone),
            all_day=bool(event.get("is_all_day")),
            online=bool(event.get("is_online_meeting")),
            attendees=attendees,
            note=HIDDEN_NOTE if attendees_hidden(event, me) else None,
        )
        (all_day if view.all_day else meetings).append(view)
    return Digest(user.id, user.email, user.name, day, zone.key, meetings, all_day, list(meet_most or [])[:3])
