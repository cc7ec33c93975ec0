"""Recurring series as Outlook reports them: what calendarView delta may not reveal, read from the series master.

Removing one occurrence of a series notifies only the series master ("Removal of a recurring event instance
causes only update notification on the SeriesMaster event", microsoft-graph-docs#5520), and developers report
that calendarView delta then gives "no indication ... for a deleted occurrence" (microsoft-graph-docs PR #4501);
neither is in Microsoft's reference, so calsync does not rely on delta for series. After a delta round (not a
full one: that already compares everything) it checks a series when the round touched one of its occurrences,
and every series with occurrences in the window when a notification led to a round that revealed nothing
(at most once per ``CHECK_EVERY`` per calendar, as rounds that reveal nothing are common: duplicate
notifications, the calendar poll, reconciliation; one held back is done by the next such round after it).

A check is one GET of the master with ``cancelledOccurrences`` ($select; "OID.{master id}.{date}") and
``exceptionOccurrences`` ($expand), and, since neither tells a pattern change (a series truncated by its
organizer, a weekday removed), the master's ``instances`` in the synced window: "the occurrences and exceptions
of the event in the specified time range". Stored occurrences of the series in the window that Graph no longer
lists, or whose date was cancelled, are removed; what it lists is written (order guard as always).

A check reads Graph after the round's delta token was taken, so an occurrence it creates (a series moved or
extended since the token) is one that token never listed, and the next round from it need not report its
removal: the delta query reports removed instances, and this one was never delivered. Chaos R1 long found it: a
series moved between a round and its check, then deleted before the next round, left every occurrence the check
wrote stored for good. Such a series is checked again after the next round (``recheck``, saved with the cursor),
whose token is newer than those writes: what is gone by then the check removes, what is still there that token
lists.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from pymongo.database import Database
from redis import Redis

from service import timezones
from service.graph import GraphClient, GraphError, Throttled
from service.store import as_utc
from service.store import events as events_store
from service.store import series as series_store
from service.store.records import Calendar
from service.sync import rounds

log = logging.getLogger(__name__)

MASTER = "users/{user_id}/calendars/{calendar_id}/events/{master_id}"   # the calendar's own: shared ones too
MASTER_QUERY = {"$select": "id,type,lastModifiedDateTime,cancelledOccurrences,recurrence",
                "$expand": "exceptionOccurrences"}
MAX_SERIES = 25                  # series checked in one round: the soonest first
MAX_PAGES = 50
CHECK_EVERY = 300                # seconds between checks of every series of a calendar after rounds that showed nothing
THROTTLE_KEY = "calsync:series-check:{user_id}:{calendar}"
GONE = frozenset({"ErrorItemNotFound", "ItemNotFound", "itemNotFound", "ErrorInvalidIdMalformed"})


@dataclass
class SeriesCheck:
    series: int = 0
    requests: int = 0
    removed: int = 0
    written: int = 0
    ranges: dict = field(default_factory=dict)   # master id -> how the series ends (recurring-meeting hygiene)
    recheck: set[str] = field(default_factory=set)   # masters to check again after the next round


def all_due(redis: Redis, calendar: Calendar) -> bool:
    """Whether every series of the calendar may be checked now (and if so, not again for ``CHECK_EVERY``)."""
    key = THROTTLE_KEY.format(user_id=calendar.user_id,
                              calendar=hashlib.sha256(calendar.calendar_id.encode()).hexdigest()[:16])
    return bool(redis.set(key, 1, nx=True, ex=CHECK_EVERY))


def check(db: Database, graph: GraphClient, calendar: Calendar, masters: set[str] | None,
          window: tuple[datetime, datetime],
          now: datetime, removals: events_store.Removals | None = None,
          changes: events_store.MeetingChanges | None = None, recheck: Iterable[str] = ()) -> SeriesCheck:
    """Bring the stored occurrences of these series (every series stored in the window when None) in this calendar
    in line with their masters; ``recheck`` (checked too) are those the last check wrote newer than its token.
    ``recheck`` of the result: those this check wrote new occurrences for, and those of ``recheck`` it did not
    check (skipped, or past ``MAX_SERIES``), to be checked after the next round."""
    done = SeriesCheck()
    recheck = set(recheck)
    if masters is not None:
        masters = set(masters) | recheck
    stored = events_store.series_occurrences(db, calendar.user_id, calendar.calendar_id, masters, *window)
    if masters is None:
        masters = set(stored) | recheck
    checked = set()
    for master_id in sorted(masters, key=lambda m: (min((as_utc(d["start"]) for d in stored.get(m, [])),
                                                         default=window[1]), m))[:MAX_SERIES]:
        try:
            items = _truth(graph, calendar, master_id, window, stored.get(master_id, []), done)
        except Throttled:
            raise                    # the round is rescheduled, this check with it
        except GraphError as exc:    # a supplement to delta: logged (with Graph's request ids), tried next round
            log.warning("series check of user %s skipped a series: %s", calendar.user_id, exc)
            continue
        result = events_store.apply_changes(db, calendar.user_id, items, now, calendar.calendar_id, removals)
        checked.add(master_id)
        if result.changes.created:   # occurrences the round's token never listed (see the module's docstring)
            done.recheck.add(master_id)
        done.series += 1
        done.written += result.upserted
        done.removed += sum(1 for i in items if "@removed" in i)
        if changes is not None:
            changes.add(result.changes)
    done.recheck |= recheck - checked
    series_store.record(db, calendar.user_id, done.ranges, now)
    if done.removed or done.written:
        log.info("series check for a calendar of user %s: %d series, %d request(s), %d written, %d removed",
                 calendar.user_id, done.series, done.requests, done.written, done.removed)
    return done


def _truth(graph: GraphClient, calendar: Calendar, master_id: str, window: tuple[datetime, datetime],
           stored: list[dict], done: SeriesCheck) -> list[dict]:
    """The series' occurrences in the window as Graph lists them now, and removals for stored ones it does not."""
    path = MASTER.format(user_id=quote(calendar.user_id, safe=""), calendar_id=quote(calendar.calendar_id, safe=""),
                         master_id=quote(master_id, safe=""))
    try:
        master = graph.get_json(path, params=MASTER_QUERY)
        done.requests += 1
    except GraphError as exc:
        if exc.status == 404 and exc.code in GONE:   # the whole series is gone
            return [{"id": d["graph_id"], "@removed": {"reason": "deleted"}} for d in stored]
        raise
    found = series_store.range_of(master)
    if found:
        done.ranges[master_id] = found
    cancelled = _cancelled_dates(master, master_id)
    listed = [e for e in (master.get("exceptionOccurrences") or []) if isinstance(e, dict) and _inside(e, window)]
    listed += _instances(graph, path, window, done)
    present = {e.get("id") for e in listed}
    gone = [d["graph_id"] for d in stored
            if d["graph_id"] not in present or (d.get("type") == "occurrence" and _local_date(d) in cancelled)]
    return listed + [{"id": graph_id, "@removed": {"reason": "deleted"}} for graph_id in gone]


def _instances(graph: GraphClient, path: str, window: tuple[datetime, datetime], done: SeriesCheck) -> list[dict]:
    """Every page of the master's instances in the window (links only to Graph's own host)."""
    start, end = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in window)
    url, found = f"{path}/instances", []
    params: dict | None = {"startDateTime": start, "endDateTime": end}
    for _ in range(MAX_PAGES):
        page = graph.get_json(url, params=params, headers={"Prefer": 'outlook.timezone="UTC"'})
        done.requests += 1
        if not isinstance(page, dict) or not isinstance(page.get("value"), list):
            raise rounds.BadGraphResponse(0, "malformedInstances")
        found += [e for e in page["value"] if isinstance(e, dict)]
        next_link = page.get("@odata.nextLink")
        if not isinstance(next_link, str):
            return found
        if rounds.origin(next_link) != rounds.origin(graph.base_url):
            raise rounds.BadGraphResponse(0, "foreignLink")
        url, params = next_link, None
    raise rounds.BadGraphResponse(0, "tooManyPages")


def _cancelled_dates(master: object, master_id: str) -> set[str]:
    """Dates (YYYY-MM-DD) of cancelled occurrences: "OID.{series master id}.{date}"."""
    values = master.get("cancelledOccurrences") if isinstance(master, dict) else None
    dates = set()
    for value in values if isinstance(values, list) else []:
        if isinstance(value, str) and value.startswith("OID.") and value.rsplit(".", 1)[0] == f"OID.{master_id}":
            dates.add(value.rsplit(".", 1)[1][:10])
    return dates


def _local_date(doc: dict) -> str:
    """The date of a stored occurrence in the zone its series was created in (an occurrence's key)."""
    return as_utc(doc["start"]).astimezone(timezones.zone(doc.get("start_tz"))).date().isoformat()


def _inside(event: dict, window: tuple[datetime, datetime]) -> bool:
    start = events_store.parse_date_time_zone(event.get("start"))
    end = events_store.parse_date_time_zone(event.get("end"))
    return start is not None and end is not None and start < window[1] and end > window[0]
