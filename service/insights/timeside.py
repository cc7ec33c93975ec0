"""The time side of coaching, read from the stores: one person's week, 1:1 rhythm, recurring hygiene, network and
next week's look-ahead, each computed on demand from their own stored meetings (``meetings.in_window``: one
index range per person, excluded meetings out, one copy per meeting).

The week alone is also kept, finished, per person (``weeks_for`` and ``service.store.weeks``): a changed meeting
bumps the events version of the people whose calendars hold it, so only their weeks are measured again.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pymongo.database import Database

from service.insights import days, hygiene, meetings, network, org, rhythm, visibility, week
from service.insights.matching import Directory, attendee_emails, self_emails
from service.insights.people import styles
from service.insights.rhythm import FRAMEWORK_ORDER, time_tips
from service.insights.tips import Tip
from service.insights.workhours import WorkingHours, from_doc
from service.store import events as events_store
from service.store import exclusions, utcnow
from service.store import series as series_store
from service.store import weeks as week_summaries
from service.store import workhours as workhours_store
from service.store.records import User

HISTORY = timedelta(days=rhythm.LOOKBACK_DAYS)


@dataclass
class Person:
    """Who a person is for these insights: their zone, working hours, addresses, directory entry."""

    user: User
    zone: ZoneInfo
    hours: WorkingHours
    me: set[str]
    directory: Directory
    organization: org.Organization

    def shown(self, person: dict | None) -> bool:
        return visibility.shows(self.user, person, self.organization)

    @property
    def entry(self) -> dict | None:
        return self.directory.person(self.user.email)


def person_for(db: Database, user: User, events: list[dict]) -> Person:
    directory = Directory.for_emails(db, attendee_emails(events) | {user.email} | _manager_of(db, user))
    return Person(user, days.user_zone(user), from_doc(workhours_store.get(db, user.id)),
                  self_emails(user, directory), directory, org.for_user(db, user))


def _manager_of(db: Database, user: User) -> set[str]:
    entry = Directory.for_emails(db, {user.email}).person(user.email)
    return {entry["manager"]} if entry and entry.get("manager") else set()


def week_report(db: Database, user: User, year: int, number: int) -> WeekReport:
    """One person's ISO week in their zone (the batched read, for one: their slice of the index)."""
    return weeks_for(db, [user], year, number)[user.id]


WeekReport = week.WeekReport
BATCH = 500


def weeks_for(db: Database, users: list[User], year: int, number: int,
              measured: set[str] | None = None) -> dict[str, WeekReport]:
    """The ISO week of many people at once (each in their own zone), served from the stored weekly summaries
    (``service.store.weeks``) where they are fresh; only the missing and stale ones are measured from events
    and stored.

    Per batch of 500 (sorted ids): one summaries range (each person's events version and stored week), one
    exclusions, one working-hours and one directory query, which make each person's fingerprint of the week's
    other inputs; then, for the people whose stored week is missing, stale (their events were written since) or
    of another fingerprint, their slice of the ``(user_id, start)`` index (``events.in_window_for_users``), the
    measures in process, and one compare-and-set write of their new summaries against the events version read
    before their events were.

    With more than one batch, the next batch is read by one thread while this one is measured: the reads wait on
    the server, the measures on this process, and the two overlap (bench P9). ``measured`` collects the ids of
    the people whose week was measured from events."""
    users = sorted(users, key=lambda u: u.id)
    batches = [users[at:at + BATCH] for at in range(0, len(users), BATCH)]
    found: dict[str, WeekReport] = {}
    if len(batches) <= 1:
        for batch in batches:
            found.update(_measure_batch(db, _read_batch(db, batch, year, number), year, number, measured))
        return found
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="weeks-read") as reader:
        pending = reader.submit(_read_batch, db, batches[0], year, number)
        for following in [*batches[1:], None]:
            read = pending.result()
            if following is not None:
                pending = reader.submit(_read_batch, db, following, year, number)
            found.update(_measure_batch(db, read, year, number, measured))
    return found


@dataclass
class _Batch:
    users: list[User]
    zones: dict[str, ZoneInfo]
    events: dict[str, list[dict]]            # of the people measured again only
    excluded: dict
    hours: dict[str, dict | None]
    directory: Directory
    held: dict[str, week_summaries.Held]
    fingerprints: dict[str, str]
    served: dict[str, WeekReport]            # fresh stored weeks


def _read_batch(db: Database, batch: list[User], year: int, number: int) -> _Batch:
    zones = {u.id: days.user_zone(u) for u in batch}
    held = week_summaries.read(db, zones, year, number)     # before the events: the version they are stored at
    excluded, hours = exclusions.for_users(db, zones), workhours_store.for_ids(db, zones)
    directory = Directory.for_emails(db, {u.email for u in batch})
    fingerprints = {u.id: fingerprint(zones[u.id], hours[u.id], excluded[u.id], self_emails(u, directory))
                    for u in batch}
    served = {}
    for user in batch:
        summary = held[user.id].summary
        if summary and summary.get("fingerprint") == fingerprints[user.id]:
            served[user.id] = week.report_from_text(summary["report"])
    stale = {u: z for u, z in zones.items() if u not in served}
    events = {}
    if stale:
        bounds = [week.week_bounds(year, number, z) for z in stale.values()]
        events = events_store.in_window_for_users(db, stale, min(b[0] for b in bounds).astimezone(UTC),
                                                  max(b[1] for b in bounds).astimezone(UTC))
    return _Batch(batch, zones, events, excluded, hours, directory, held, fingerprints, served)


def _measure_batch(db: Database, read: _Batch, year: int, number: int,
                   collect: set[str] | None = None) -> dict[str, WeekReport]:
    found = dict(read.served)
    measured = {user.id: week.measure(read.events[user.id], self_emails(user, read.directory), read.zones[user.id],
                                      year, number, from_doc(read.hours[user.id]), read.excluded[user.id])
                for user in read.users if user.id not in found}
    week_summaries.store(db, year, number, {
        user_id: (read.held[user_id].version, {"fingerprint": read.fingerprints[user_id],
                                               "report": week.report_text(report)})
        for user_id, report in measured.items()})
    if collect is not None:
        collect.update(measured)
    return found | measured


def keep_weeks(db: Database, users: list[User], now: datetime) -> int:
    """Measure and store, where missing or stale, the ISO week of ``now`` (UTC) and the next for these people:
    the weeks the digest's look-ahead, the week page and the API read next. Returns how many were measured."""
    this = now.astimezone(UTC).isocalendar()
    measured: set[str] = set()
    count = 0
    for year, number in ((this.year, this.week), week.next_week(this.year, this.week)):
        measured.clear()
        weeks_for(db, users, year, number, measured)
        count += len(measured)
    return count


def fingerprint(zone: ZoneInfo, hours: dict | None, excluded: exclusions.Excluded, me: set[str]) -> str:
    """Every input of a person's week other than their events (which the events version covers), hashed: their
    zone, working hours, exclusions, own addresses (directory aliases decide which attendee is them) and the
    version of the measures."""
    inputs = [week.MEASURES_VERSION, zone.key, hours, sorted(excluded.meetings), sorted(excluded.series), sorted(me)]
    text = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def rhythm_report(db: Database, user: User, now: datetime | None = None) -> list[rhythm.Rhythm]:
    now = (now or utcnow()).astimezone(UTC)
    events = meetings.in_window(db, user.id, now - HISTORY, now + timedelta(days=60))
    person = person_for(db, user, events)
    manager = (person.entry or {}).get("manager")
    return rhythm.rhythms(events, person.me, person.directory, now, manager, shown=person.shown)


def hygiene_report(db: Database, user: User, horizon: datetime, now: datetime | None = None) -> hygiene.Hygiene:
    """``horizon``: the end of the synced window (what calsync can know of a series' future)."""
    now = (now or utcnow()).astimezone(UTC)
    events = meetings.in_window(db, user.id, now - timedelta(days=28), horizon)
    person = person_for(db, user, events)
    ranges = series_store.for_user(db, user.id, {e["series_master_id"] for e in events if e.get("series_master_id")})
    return hygiene.review(events, person.me, now, horizon, ranges=ranges)


def network_report(db: Database, user: User, now: datetime | None = None) -> network.Network:
    now = (now or utcnow()).astimezone(UTC)
    events = meetings.in_window(db, user.id, now - 2 * network.WINDOW, now)
    person = person_for(db, user, events)
    return network.analyse(events, person.me, person.directory, person.organization, now, person.shown)


@dataclass
class FirstMeeting:
    at: datetime                   # local
    subject: str
    name: str
    email: str
    tip: Tip | None
    person_id: str | None = None


@dataclass
class LookAhead:
    """Next week, seen from this one: its load, its heaviest day, first meetings with new people, tips."""

    report: WeekReport
    first_meetings: list[FirstMeeting] = field(default_factory=list)
    tips: list[Tip] = field(default_factory=list)
    overdue: list[rhythm.Rhythm] = field(default_factory=list)     # 1:1s past 1.5 times their usual interval


def look_ahead(db: Database, user: User, year: int, number: int, now: datetime | None = None) -> LookAhead:
    """An ISO week (in the person's zone) seen from ``now``: its load, who they meet for the first time (nobody
    calsync has seen them meet in the 90 days before now) and tips for both."""
    now = (now or utcnow()).astimezone(UTC)
    zone = days.user_zone(user)
    start, end = week.week_bounds(year, number, zone)
    events = meetings.in_window(db, user.id, now - HISTORY, max(end.astimezone(UTC), now + timedelta(days=60)))
    person = person_for(db, user, events)
    report = week.measure(events, person.me, zone, year, number, person.hours)
    now_s = now.timestamp()
    met_before = {email for m in week.clean(events, person.me) if m.start < now_s for email in m.people}
    first: list[FirstMeeting] = []
    seen: set[str] = set()
    for meeting in week.clean(events, person.me):
        if not (max(start.timestamp(), now_s) <= meeting.start < end.timestamp()):
            continue
        for email in meeting.people:
            entry = person.directory.person(email)
            known = set((entry or {}).get("emails") or [email])
            if known & (met_before | seen):
                continue
            seen |= known
            tip = _first_meeting_tip(entry) if entry and person.shown(entry) else None
            first.append(FirstMeeting(datetime.fromtimestamp(meeting.start, zone), meeting.subject,
                                      (entry or {}).get("name") or email, email, tip,
                                      entry["_id"] if entry else None))
    overdue = [r for r in rhythm.rhythms(events, person.me, person.directory, now,
                                         (person.entry or {}).get("manager"), shown=person.shown) if r.overdue]
    return LookAhead(report, first, _load_tips(report, events, person), overdue)


def _first_meeting_tip(entry: dict) -> Tip | None:
    library = time_tips()["first_meeting"]
    theirs = styles(entry)
    for framework in FRAMEWORK_ORDER:
        code = theirs.get(framework)
        if code and code in library.get(framework, {}):
            return Tip(framework, code, library[framework][code])
    return None


HEAVY_HOURS = 20


def _load_tips(report: WeekReport, events: list[dict], person: Person) -> list[Tip]:
    """A tip when the week is heavy: by the most common DISC style among the people in it, else about focus."""
    if report.meeting < HEAVY_HOURS and report.focus >= 4:
        return []
    counts: dict[str, int] = {}
    begins, ends = report.start.timestamp(), report.end.timestamp()
    for meeting in week.clean(events, person.me):
        if begins <= meeting.start < ends:
            for email in meeting.people:
                entry = person.directory.person(email)
                code = styles(entry).get("disc") if entry and person.shown(entry) else None
                if code:
                    counts[code] = counts.get(code, 0) + 1
    library = time_tips()["load"]
    hours = f"{report.meeting:g} h of meetings next week"
    if counts:
        code = max(sorted(counts), key=lambda c: counts[c])
        return [Tip("disc", code, f"{hours} and {library['disc'][code]}")]
    return [Tip("time", "load", f"{hours}: {library['default']}")]
