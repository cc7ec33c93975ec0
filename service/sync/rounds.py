"""Delta sync of one user's calendar window into MongoDB.

A round follows ``calendarView/delta`` from the stored delta link (or from scratch when there is none,
when the window rolled forward, or when Graph rejects the token), applies each page as it arrives
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
from urllib.parse import urlencode, urlsplit

from pymongo.database import Database

from service.config import Settings
from service.graph import GraphClient, GraphError
from service.store import events as events_store
from service.store import sync_state, users, utcnow
from service.timezones import to_iana

log = logging.getLogger(__name__)

DELTA_PATH = "me/calendarView/delta"
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
    applied: events_store.ApplyResult = field(default_factory=events_store.ApplyResult)

    @property
    def label(self) -> str:
        return f"full:{self.reason}" if self.full else "delta"


def window_for(settings: Settings, now: datetime) -> tuple[datetime, datetime]:
    """The synced window, whole UTC days, so it only moves once a day (the daily re-baseline)."""
    today = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
    return today - timedelta(days=settings.sync_days_back), today + timedelta(days=settings.sync_days_ahead + 1)


def baseline_reason(state: dict | None, window: tuple[datetime, datetime]) -> str | None:
    """Why this round must start from scratch, or None when the stored delta link can be used."""
    if not state or not state.get("delta_link"):
        return "initial"
    if (state.get("window_start"), state.get("window_end")) != window:
        return "window-roll"
    return None


def run_round(db: Database, settings: Settings, user_id: str, graph: GraphClient, *,
              keep: Callable[[], None] | None = None, now: datetime | None = None) -> RoundResult:
    """One delta round for a user; a rejected delta token turns into a full resync (nothing lost)."""
    now = now or utcnow()
    window = window_for(settings, now)
    state = sync_state.get(db, user_id)
    reason = baseline_reason(state, window)
    if reason is None:
        try:
            return _round(db, user_id, graph, window, state["delta_link"], None, keep, state.get("baseline_at"))
        except GraphError as exc:
            if not token_rejected(exc):
                raise
            log.info("delta token for user %s rejected (%s %s); full resync", user_id, exc.status, exc.code)
            reason = "token-rejected"
    return _round(db, user_id, graph, window, initial_url(window), reason, keep, now)


def token_rejected(exc: GraphError) -> bool:
    return exc.status == 410 or exc.code in RESYNC_CODES


def initial_url(window: tuple[datetime, datetime]) -> str:
    start, end = (w.strftime("%Y-%m-%dT%H:%M:%S") + "Z" for w in window)
    return f"{DELTA_PATH}?{urlencode({'startDateTime': start, 'endDateTime': end})}"


def _round(db: Database, user_id: str, graph: GraphClient, window: tuple[datetime, datetime], url: str,
           full_reason: str | None, keep: Callable[[], None] | None, baseline_at: datetime | None) -> RoundResult:
    result = RoundResult(full=full_reason is not None, reason=full_reason or "delta")
    started = utcnow()
    headers = {"Prefer": PREFER.format(size=PAGE_SIZE)}
    while True:
        if result.pages >= MAX_PAGES:
            raise BadGraphResponse(0, "tooManyPages")
        page = graph.get_json(url, headers=headers)
        items, next_link, delta_link = _page_parts(page, graph.base_url)
        if keep is not None:
            keep()
        result.applied.add(events_store.apply_changes(db, user_id, items, utcnow()))
        result.pages += 1
        if delta_link is not None:
            break
        url = next_link
    if result.full:
        result.removed_missing = events_store.delete_missing(db, user_id, result.applied.seen, started)
    sync_state.save(db, user_id, delta_link, window[0], window[1], baseline_at)
    return result


def _page_parts(page: object, base_url: str) -> tuple[list, str | None, str | None]:
    """(items, nextLink, deltaLink) of a delta page; exactly one link, and it must point at Graph."""
    if not isinstance(page, dict) or not isinstance(page.get("value"), list):
        raise BadGraphResponse(0, "malformedPage")
    next_link, delta_link = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
    link = next_link if isinstance(next_link, str) else delta_link if isinstance(delta_link, str) else None
    if link is None or (isinstance(next_link, str) and isinstance(delta_link, str)):
        raise BadGraphResponse(0, "malformedPage")
    if _origin(link) != _origin(base_url):
        raise BadGraphResponse(0, "foreignLink")   # never send the user's token anywhere else
    return page["value"], (link if link is next_link else None), (link if link is delta_link else None)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


# ------------------------------------------------------------------ after a round

def infer_time_zone(db: Database, user_id: str) -> str | None:
    """Set graph_time_zone/time_zone from the user's own meetings unless they chose a zone themselves.

    Returns the zone recorded, or None when nothing changed.
    """
    user = users.get(db, user_id)
    if not user or not user.email or user.time_zone_source == "user":
        return None
    current, inferred_before = user.time_zone, user.graph_time_zone
    if current and (not inferred_before or current != to_iana(inferred_before)):
        return None   # a zone set in calsync's settings wins over anything inferred
    graph_zone = events_store.most_common_organizer_zone(db, user_id, user.email)
    if graph_zone is None or graph_zone == inferred_before:
        return None
    users.record_inferred_time_zone(db, user_id, graph_zone, to_iana(graph_zone))
    return graph_zone
