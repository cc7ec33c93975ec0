"""What goes in a user's digest for one local day: a pure function of the user, events and directory.

The digest reads top to bottom: a summary line (meetings, people, time in meetings, the heaviest stretch), the
meetings (who is in each: named people, unnamed outsiders counted by domain), then each person met today once
with their styles and tips (whatever meetings they are in), then a few people met often who are not in today's
meetings. A tip appears once per mail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from service import timezones, when
from service.insights import days
from service.insights.collaborators import Collaborator
from service.insights.matching import (
    HIDDEN_NOTE,
    Directory,
    Match,
    attendees_hidden,
    has_own_name,
    match_attendees,
    self_emails,
    user_response,
)
from service.insights.meetings import subject_of
from service.insights.org import Organization, domain_of
from service.insights.people import style_label, styles
from service.insights.tips import Tip, tips_for
from service.store import as_utc
from service.store.records import User

BREAK = timedelta(minutes=10)     # a shorter gap between two meetings does not break a stretch
TIPS_PER_PERSON = 2


@dataclass
class TipView:
    """A tip as a mail shows it, with the links that tell calsync whether it helped."""

    tip: Tip
    person_id: str | None = None
    useful: str | None = None        # feedback links, filled in by the sender
    not_useful: str | None = None
    rate: str | None = None          # the page that asks which (the plain text's one link per tip)
    number: int = 0                  # its place in the mail, for the plain text's list of feedback links

    @property
    def text(self) -> str:
        return self.tip.text

    @property
    def framework(self) -> str:
        return self.tip.framework

    @property
    def key(self) -> str:
        return self.tip.key


@dataclass
class AttendeeView:
    name: str
    email: str
    matched: bool
    styles: list[str]            # human labels, e.g. "DISC D (Dominance)"
    tips: list[TipView]
    external: bool = False       # outside the user's organization (service.insights.org)
    person_id: str | None = None
    named: bool = True           # has a name of its own (not just an address): unnamed outsiders are counted
    anchor: str = ""             # where this person's tips are in the digest ("" when they have none)

    @property
    def domain(self) -> str:
        return domain_of(self.email)


@dataclass(frozen=True)
class Outsiders:
    """Unnamed attendees from outside the organization, counted by their domain."""

    domain: str
    count: int

    @property
    def words(self) -> str:
        return f"{when.count(self.count, 'person', 'people')} from {self.domain}"


class SplitsAttendees:
    """``internal`` and ``external`` for a view with ``attendees`` (a digest's meeting, a prep mail)."""

    attendees: list[AttendeeView]

    @property
    def internal(self) -> list[AttendeeView]:
        return [a for a in self.attendees if not a.external]

    @property
    def external(self) -> list[AttendeeView]:
        return [a for a in self.attendees if a.external]

    @property
    def external_named(self) -> list[AttendeeView]:
        return [a for a in self.attendees if a.external and (a.named or a.matched)]

    @property
    def outsiders(self) -> list[Outsiders]:
        """"2 people from fabrikam.com": outsiders known only by their address, grouped by domain."""
        counts = Counter(a.domain or "an unknown domain" for a in self.attendees
                         if a.external and not a.named and not a.matched)
        return [Outsiders(domain, n) for domain, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


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
class PersonView:
    """One person in the digest's people section: their styles, tips, and today's meetings with them."""

    anchor: str
    name: str
    email: str
    person_id: str
    styles: list[str]
    tips: list[TipView]
    meetings: list[str] = field(default_factory=list)   # "09:00 Quarterly planning"
    why: str | None = None                               # for people not met today: "met 6 times in the last 14 days"
    external: bool = False


@dataclass(frozen=True)
class Summary:
    meetings: int
    people: int
    busy: timedelta                   # time in meetings, overlaps counted once
    stretch: tuple[datetime, datetime, int] | None   # the longest run without a break: start, end, meetings
    all_day: int = 0

    @property
    def words(self) -> str:
        """"3 meetings with 5 people, 2 h 15 min in all; heaviest stretch 09:00–11:30 (3 back to back)."""
        if not self.meetings:
            return "No meetings today" + (f", {when.count(self.all_day, 'all-day event')}." if self.all_day
                                          else ": time to focus.")
        text = f"{when.count(self.meetings, 'meeting')} with {when.count(self.people, 'person', 'people')}, " \
               f"{when.duration(self.busy)} in all"
        if self.stretch:
            start, end, count = self.stretch
            text += f"; heaviest stretch {when.clock(start)}–{when.clock(end)}"
            text += f" ({count} back to back)" if count > 1 else f" ({when.duration(end - start)})"
        if self.all_day:
            text += f"; and {when.count(self.all_day, 'all-day event')}"
        return text + "."


@dataclass
class Section:
    """A section another part of the product adds to the digest (the Monday look-ahead, say). Every channel
    renders ``Digest.sections`` the same generic way (email HTML and text, Teams, Slack), so what one adds here
    reaches each of them without a template of its own."""

    key: str                         # a stable name ("week-ahead"): a class in the HTML, a block id in a card
    title: str
    lines: list[str]                 # plain sentences, already in the reader's zone and words
    tips: list[TipView] = field(default_factory=list)
    link: tuple[str, str] | None = None   # (label, url)


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
    opt_out_link: str | None = None       # signed: stop calsync reading my calendar and delete my data
    say_link: str | None = None           # signed, if the people directory holds the user: who sees tips about them
    people: list[PersonView] = field(default_factory=list)   # each person met today, once
    also: list[PersonView] = field(default_factory=list)     # people met often, not met today
    notice: str | None = None                                # a preview's note (why it would not be sent...)
    home_link: str | None = None                             # the user's page
    sections: list[Section] = field(default_factory=list)    # added by other parts of the product, in order

    @property
    def empty(self) -> bool:
        return not self.meetings and not self.all_day

    @property
    def summary(self) -> Summary:
        return summarise(self.meetings, self.all_day)

    @property
    def day_words(self) -> str:
        return f"{self.local_date:%A} {self.local_date.day} {self.local_date:%B %Y}"


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


def attendee_view(match: Match, my_styles: dict[str, str], seed: str, org: Organization | None = None,
                  choose: Callable[[dict], list[Tip]] | None = None) -> AttendeeView:
    their = styles(match.person)
    labels = [style_label(framework, code) for framework, code in their.items()]
    person_id = match.person["_id"] if match.person else None
    found = (choose(match.person) if choose else tips_for(match.person, my_styles, seed)) if match.person else []
    return AttendeeView(match.name, match.email, match.person is not None, labels,
                        [TipView(t, person_id) for t in found], bool(org and org.is_external(match.email)),
                        person_id, has_own_name(match))


def summarise(meetings: list[MeetingView], all_day: list[MeetingView]) -> Summary:
    """The day in one line's numbers: meetings, distinct people, time in meetings, the longest stretch."""
    people = {a.person_id or a.email for m in meetings for a in m.attendees}
    spans = sorted((m.start, m.end) for m in meetings)
    busy, runs = timedelta(), []
    for start, end in spans:
        if runs and start - runs[-1][1] <= BREAK:
            run = runs[-1]
            busy += max(end - max(start, run[1]), timedelta())
            runs[-1] = (run[0], max(run[1], end), run[2] + 1)
        else:
            busy += end - start
            runs.append((start, end, 1))
    stretch = max(runs, key=lambda r: (r[1] - r[0], r[2]), default=None)
    return Summary(len(meetings), len(people), busy, stretch, len(all_day))


def build_digest(
    user: User,
    day: date,
    events: list[dict],
    directory: Directory,
    meet_most: list[Collaborator] | None = None,
    zone: ZoneInfo | None = None,
    org: Organization | None = None,
    choose: Callable[[dict, int], list[Tip]] | None = None,
) -> Digest:
    """The digest for ``user`` on local ``day``: meetings in local time, each person met once with their tips
    (``choose(person, limit)`` picks them; default: the tips library's rotation for the day)."""
    zone = zone or days.user_zone(user)
    me = self_emails(user, directory)
    my_styles = styles(directory.person(user.email))
    meetings, all_day = [], []
    for event in sorted(events, key=lambda e: (as_utc(e["start"]), e.get("subject") or "")):
        if not shown(event, me) or not on_day(event, zone, day):
            continue
        attendees = [attendee_view(m, my_styles, "", org, choose=lambda _person: [])
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
    digest = Digest(user.id, user.email, user.name, day, zone.key, meetings, all_day, list(meet_most or [])[:3])
    pick = choose or (lambda person, limit: tips_for(person, my_styles, f"{day.isoformat()}:{person['_id']}",
                                                     limit))
    digest.people = people_met(meetings, directory, pick)
    return digest


def people_met(meetings: list[MeetingView], directory: Directory,
               choose: Callable[[dict, int], list[Tip]]) -> list[PersonView]:
    """Each person of the directory in today's meetings, once, in the order of their first meeting, with their
    tips; each meeting's attendee points at them (``anchor``)."""
    found: dict[str, PersonView] = {}
    for meeting in meetings:
        for attendee in meeting.attendees:
            if attendee.person_id is None or not attendee.styles:
                continue
            view = found.get(attendee.person_id)
            if view is None:
                person = directory.person(attendee.email) or {"_id": attendee.person_id}
                tips = [TipView(t, attendee.person_id) for t in choose(person, TIPS_PER_PERSON)]
                view = found[attendee.person_id] = PersonView(
                    f"p{len(found) + 1}", attendee.name, attendee.email, attendee.person_id, attendee.styles, tips,
                    external=attendee.external)
            view.meetings.append(f"{when.clock(meeting.start)} {meeting.subject}")
            attendee.anchor = view.anchor
    return list(found.values())
