"""Delta sync of one calendar's window into MongoDB, and the user's list of calendars.

Graph tracks each calendar separately ("to track the changes in multiple calendars, you need to track each
calendar individually", delta-query-events), so every calendar has its own cursor and window. A round
follows ``users/{id}/calendars/{cid}/calendarView/delta`` from its stored delta link (or from scratch when
there is none, when the window rolled forward, or when Graph rejects the token), applies each page as it arrives
(``service.store.events.apply_changes``: stripping, order guard, ``@removed``), and stores the new
delta link only after the last page. A crash mid-round therefore replays from the old cursor, which is
harmless because upserts are idempotent and order-guarded. The caller holds the per-user lock and passes
``keep`` (``service.locks.keep`` of that lock), so a round that lost its lock raises ``LockLost`` before
applying another page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from urllib.parse import quote, urlencode, urlsplit

from pymongo.database import Database

from service.config import Settings
from service.graph import GraphClient, GraphError
from service.store import calendars as calendar_store
from service.store import events as events_store
from service.store import users, utcnow
from service.store.records import Calendar, User
from service.timezones import to_iana

log = logging.getLogger(__name__)

DELTA_PATH = "users/{user_id}/calendars/{calendar_id}/calendarView/delta"
CALENDARS_PATH = "users/{user_id}/calendars"
PAGE_SIZE = 50
MAX_PAGES = 5_000                   # a runaway nextLink chain is a bug, not a calendar
RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired", "SyncStateNotFound", "ResyncRequired"})
PREFER = 'odata.maxpagesize={size}, outlook.timezone="UTC"'


class BadGraphResponse(GraphError):
    """A delta page without a usable shape or with a link off Graph's host."""


@dataclass
class RoundResult:
    full: bool = False
    reason: str = "delta"
    pages: int = 0
    removed_missing: int = 0
    items: int = 0                                       # entries the pages carried (0: the round revealed nothing)
    series: set[str] = field(default_factory=set)        # series masters whose occurrences the pages touched
    cursor: tuple | None = None                          # (delta link, window start, window end, baseline_at)
    recheck: set[str] = field(default_factory=set)       # series to check after the next round (series.check)
    applied: events_store.ApplyResult = field(default_factory=events_store.ApplyResult)

    @property
    def label(self) -> str:
        return f"full:{self.reason}" if self.full else "delta"


def window_for(settings: Settings, now: datetime) -> tuple[datetime, datetime]:
    """The synced window, whole UTC days, so it only moves once a day (the daily re-baseline)."""
    today = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
    return today - timedelta(days=settings.sync_days_back), today + timedelta(days=settings.sync_days_ahead + 1)


def baseline_reason(calendar: Calendar, window: tuple[datetime, datetime]) -> str | None:
    """Why this round must start from scratch, or None when the stored delta link can be used."""
    if not calendar.delta_link:
        return "initial"
    if (calendar.window_start, calendar.window_end) != window:
        return "window-roll"
    return None


def run_round(db: Database, settings: Settings, calendar: Calendar, graph: GraphClient, *,
              keep: Callable[[], None] | None = None, now: datetime | None = None,
              changes: events_store.MeetingChanges | None = None,
              removals: events_store.Removals | None = None) -> RoundResult:
    """One delta round for one calendar; a rejected delta token turns into a full resync (nothing lost).

    ``changes`` collects the meetings each page created, updated or deleted as it is written, so a round
    that fails half-way still reports what it wrote (``meetings.changed``). ``removals`` (a round over all
    the user's calendars) collects what left this calendar instead of deleting it at once: it may have moved
    to another one (``events.apply_changes``)."""
    now = now or utcnow()
    window = window_for(settings, now)
    reason = baseline_reason(calendar, window)
    if reason is None:
        try:
            return _round(db, calendar, graph, window, calendar.delta_link, None, keep, calendar.baseline_at,
                          changes, removals)
        except GraphError as exc:
            if not token_rejected(exc):
                raise
            log.info("delta token for a calendar of user %s rejected (%s %s); full resync", calendar.user_id,
                     exc.status, exc.code)
            reason = "token-rejected"
    return _round(db, calendar, graph, window, initial_url(calendar, window), reason, keep, now, changes, removals)


def token_rejected(exc: GraphError) -> bool:
    return exc.status == 410 or exc.code in RESYNC_CODES


def initial_url(calendar: Calendar, window: tuple[datetime, datetime]) -> str:
    start, end = (w.strftime("%Y-%m-%dT%H:%M:%S") + "Z" for w in window)
    path = DELTA_PATH.format(user_id=quote(calendar.user_id, safe=""),
                             calendar_id=quote(calendar.calendar_id, safe=""))
    return f"{path}?{urlencode({'startDateTime': start, 'endDateTime': end})}"


def _round(db: Database, calendar: Calendar, graph: GraphClient, window: tuple[datetime, datetime], url: str,
           full_reason: str | None, keep: Callable[[], None] | None, baseline_at: datetime | None,
           changes: events_store.MeetingChanges | None = None,
           removals: events_store.Removals | None = None) -> RoundResult:
    result = RoundResult(full=full_reason is not None, reason=full_reason or "delta")
    started = utcnow()
    headers = {"Prefer": PREFER.format(size=PAGE_SIZE)}
    while True:
        if result.pages >= MAX_PAGES:
            raise BadGraphResponse(0, "tooManyPages")
        page = graph.get_json(url, headers=headers)
        items, next_link, delta_link = _page_parts(page, graph.base_url)
        result.items += len(items)
        result.series |= {i["seriesMasterId"] for i in items
                          if isinstance(i, dict) and isinstance(i.get("seriesMasterId"), str)}
        if keep is not None:
            keep()
        applied = events_store.apply_changes(db, calendar.user_id, items, utcnow(), calendar.calendar_id, removals)
        result.applied.add(applied)
        if changes is not None:
            changes.add(applied.changes)
        result.pages += 1
        if delta_link is not None:
            break
        url = next_link
    if result.full:
        gone = events_store.MeetingChanges()
        result.removed_missing = events_store.delete_missing(db, calendar.user_id, calendar.calendar_id,
                                                             result.applied.seen, started,
                                                             orphans=calendar.is_default, changes=gone,
                                                             removals=removals)
        result.applied.changes.add(gone)
        if changes is not None:
            changes.add(gone)
    result.cursor = (delta_link, window[0], window[1], baseline_at)
    if removals is None:
        save_cursor(db, calendar, result)
    return result


def save_cursor(db: Database, calendar: Calendar, result: RoundResult) -> None:
    """Store where a finished round ended. A round over several calendars saves every cursor only after the
    removals it noted were applied: saved earlier, a worker dying in between would skip them for good."""
    if result.cursor is not None:
        calendar_store.save_cursor(db, calendar.user_id, calendar.calendar_id, *result.cursor, result.recheck)


def _page_parts(page: object, base_url: str) -> tuple[list, str | None, str | None]:
    """(items, nextLink, deltaLink) of a delta page; exactly one link, and it must point at Graph."""
    if not isinstance(page, dict) or not isinstance(page.get("value"), list):
        raise BadGraphResponse(0, "malformedPage")
    next_link, delta_link = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
    link = next_link if isinstance(next_link, str) else delta_link if isinstance(delta_link, str) else None
    if link is None or (isinstance(next_link, str) and isinstance(delta_link, str)):
        raise BadGraphResponse(0, "malformedPage")
    if origin(link) != origin(base_url):
        raise BadGraphResponse(0, "foreignLink")   # never send the user's token anywhere else
    return page["value"], (link if link is next_link else None), (link if link is delta_link else None)


def origin(url: str) -> tuple[str, str]:
    """(scheme, host) of a URL: links Graph returns must stay on Graph's own host."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


# ------------------------------------------------------------------ the user's calendars

@dataclass
class CalendarChanges:
    added: list[Calendar] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)     # Graph calendar ids no longer listed
    meetings: events_store.MeetingChanges = field(default_factory=events_store.MeetingChanges)  # their events
    calendars: list[Calendar] = field(default_factory=list)   # the user's calendars now (``for_user``'s order)


def refresh_calendars(db: Database, graph: GraphClient, user_id: str, user_email: str,
                      now: datetime | None = None, known: list[Calendar] | None = None,
                      record: bool = True) -> CalendarChanges:
    """List the user's calendars (every page), record them, and forget the ones Outlook no longer has
    (with their events). Calendars shared with the user by someone else are recorded but not read until the
    user turns them on. ``known``: the user's calendars as the caller just read them (else read here); the
    list after the refresh is returned in ``calendars``, read once after it was written. ``record``: store when
    the list was read (``record_calendars_refreshed``); a sync round passes False and stores ``now`` with its
    outcome instead (a round that stops before that lists the calendars again next time)."""
    now = now or utcnow()
    listed, url, pages = [], CALENDARS_PATH.format(user_id=quote(user_id, safe="")), 0
    while url is not None:
        page = graph.get_json(url)
        if not isinstance(page, dict) or not isinstance(page.get("value"), list) or pages >= MAX_PAGES:
            raise BadGraphResponse(0, "malformedCalendarList")
        listed += [entry for raw in page["value"] if (entry := _calendar_entry(raw, user_email))]
        next_link = page.get("@odata.nextLink")
        if isinstance(next_link, str) and origin(next_link) != origin(graph.base_url):
            raise BadGraphResponse(0, "foreignLink")
        url, pages = (next_link if isinstance(next_link, str) else None), pages + 1
    if known is None:
        known = calendar_store.for_user(db, user_id)
    first_listing = not known
    added, stored = calendar_store.record_listed(db, user_id, listed, known, now)
    changes = CalendarChanges(added=added)
    present = {entry["calendar_id"] for entry in listed}
    for calendar in stored:
        if calendar.calendar_id not in present:
            events_store.delete_for_calendar(db, user_id, calendar.calendar_id, changes.meetings)
            calendar_store.remove(db, user_id, calendar.calendar_id)
            changes.removed.append(calendar.calendar_id)
    changes.calendars = [c for c in stored if c.calendar_id in present]
    default = next((c for c in changes.calendars if c.is_default), None)
    if first_listing and default is not None:
        events_store.adopt_orphans(db, user_id, default.calendar_id)   # stored before calendars were known
    if record:
        users.record_calendars_refreshed(db, user_id, now)
    return changes


def _calendar_entry(raw: object, user_email: str) -> dict | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not 0 < len(raw["id"]) <= 512:
        return None
    owner = raw.get("owner") if isinstance(raw.get("owner"), dict) else {}
    owner_email = owner.get("address").strip().lower() if isinstance(owner.get("address"), str) else None
    is_default = raw.get("isDefaultCalendar") is True
    name = raw.get("name") if isinstance(raw.get("name"), str) else ""
    return {"calendar_id": raw["id"], "name": name[:200], "owner_email": owner_email, "is_default": is_default,
            "is_own": is_default or owner_email in (None, user_email.lower())}


# ------------------------------------------------------------------ after a round

def infer_time_zone(db: Database, user_id: str, seen: User | None = None) -> str | None:
    """Set graph_time_zone/time_zone from the user's own meetings unless they chose a zone themselves.

    Returns the zone recorded, or None when nothing changed. ``seen``: the user document as the caller read it
    (a sync round, at its start): when their own meetings name no zone (a new mailbox, someone who organizes
    none), that is the answer and the user is not read again; any zone found is decided on a fresh read.
    """
    zone: str | None = None
    if seen is not None and seen.email and _may_infer(seen):
        zone = events_store.most_common_organizer_zone(db, user_id, seen.email)
        if zone is None:
            return None
    user = users.get(db, user_id)
    if not user or not user.email or not _may_infer(user):
        return None
    inferred_before = user.graph_time_zone
    graph_zone = zone if zone is not None and seen is not None and seen.email == user.email \
        else events_store.most_common_organizer_zone(db, user_id, user.email)
    if graph_zone is None or graph_zone == inferred_before:
        return None
    users.record_inferred_time_zone(db, user_id, graph_zone, to_iana(graph_zone))
    return graph_zone


def _may_infer(user: User) -> bool:
    """Whether an inferred zone may be recorded: not when they chose one, in calsync's settings or otherwise."""
    if user.time_zone_source == "user":
        return False
    current, inferred_before = user.time_zone, user.graph_time_zone
    return not (current and (not inferred_before or current != to_iana(inferred_before)))
