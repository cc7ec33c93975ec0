"""One user's sync job: take the per-user lock, run a delta round over each calendar the user reads while
the user is dirty, and map Graph's failure modes onto what the user and the queue need.

A change notification names an event but not its calendar (one subscription on ``users/{id}/events`` covers
the whole mailbox), so a round visits every enabled calendar; unchanged ones cost one delta page each.

The lock (``calsync:lock:sync:{user}``) is owned by the job id, so the same job run again after a crash
takes it back at once. A job that meets a lock held by another job returns at once: the holder re-checks
``dirty`` after releasing it, and one delayed re-check per user covers a holder that died.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pymongo.database import Database
from redis import Redis

from service import locks, outbox
from service.config import Settings
from service.graph import GraphClient, GraphError, Throttled, Unauthorized
from service.identity.tokens import ReconnectRequired, require_reconnect
from service.store import calendars as calendar_store
from service.store import events as events_store
from service.store import users, utcnow
from service.store.records import Calendar, User
from service.sync import ids, mailboxes, requests, rounds, series

log = logging.getLogger(__name__)

LOCK_KEY = "calsync:lock:sync:{user_id}"
RECHECK_KEY = "calsync:sync-recheck:{user_id}"
LOCK_SECONDS = 120           # kept alive before every page; a SIGKILLed holder frees it after this
LOCKED_RETRY_SECONDS = 5.0   # another job holds the user's lock: look again then, in case it died
DEFAULT_THROTTLE_SECONDS = 30.0
MAX_ROUNDS = 5               # then requeue behind other users instead of monopolising a worker
CALENDARS_REFRESH = timedelta(hours=6)   # calendars added or removed in Outlook are noticed within this
CALENDAR_GONE = frozenset({"ErrorItemNotFound", "ItemNotFound", "itemNotFound", "ErrorInvalidIdMalformed"})


class Outcome(StrEnum):
    OK = "ok"
    COALESCED = "coalesced"              # another job holds the user's lock and will cover this request
    SKIPPED = "skipped"                  # not connected
    THROTTLED = "throttled"              # Graph asked us to wait; rescheduled
    NEEDS_RECONNECT = "needs_reconnect"
    LOCK_LOST = "lock-lost"
    CANNOT_SYNC = "cannot_sync"          # Graph says the mailbox cannot be read: checked again daily


class UserGone(Exception):  # noqa: N818 - a state, not a bug
    """Graph no longer knows this user (404 on the calendar and on /me): the account was deleted."""


@dataclass
class Report:
    outcome: Outcome
    time_zone: str | None = None     # a newly inferred time zone, when a full round found one


def sync_user(db: Database, redis: Redis, settings: Settings, graph_for: Callable[[str], GraphClient],
              user_id: str, owner: str, after_failure: bool = False) -> Report:
    """Bring one user's stored events in line with Graph. ``owner`` (the job id) names the lock's holder.

    ``after_failure``: this run retries one that failed or died mid-round. That round may have written
    pages without saving its cursor, and a delta from the older cursor need not mention an event that was
    created and removed since, so the stored copy would stay forever. The retry starts every calendar from
    scratch instead (a full round deletes what Graph no longer lists).
    """
    requests.clear_pending(redis, user_id)
    lock = locks.lock(redis, LOCK_KEY.format(user_id=user_id), LOCK_SECONDS, token=owner)
    if not locks.take(lock):
        # The guard lapses before the re-check runs, so a re-check that meets the lock again arms the next
        # one: while a dead holder's lock runs out, someone keeps looking, and a dirty user is never stranded.
        if redis.set(RECHECK_KEY.format(user_id=user_id), 1, nx=True, ex=int(LOCKED_RETRY_SECONDS)):
            requests.schedule_sync(redis, user_id, LOCKED_RETRY_SECONDS + 1 + random.uniform(0, 2))  # noqa: S311
        return Report(Outcome.COALESCED)
    try:
        if after_failure and calendar_store.clear_cursor(db, user_id):
            log.info("sync of user %s retries an interrupted one: every calendar resyncs in full", user_id)
        return _rounds(db, redis, settings, graph_for, user_id, lock)
    finally:
        locks.release(lock)
        if requests.is_dirty(redis, user_id):
            requests.request_sync(redis, user_id, "dirty-after-release")  # a notification after our last look


def _rounds(db: Database, redis: Redis, settings: Settings, graph_for: Callable[[str], GraphClient],
            user_id: str, lock) -> Report:
    report = Report(Outcome.OK)
    for _ in range(MAX_ROUNDS):
        user = users.get(db, user_id)
        requests.take_dirty(redis, user_id)
        if user is None or not user.connected or requests.is_deleting(redis, user_id):
            return Report(Outcome.SKIPPED)
        report = _one_round(db, redis, settings, graph_for, user, lock)
        if report.outcome != Outcome.OK or not requests.is_dirty(redis, user_id):
            return report
    requests.request_sync(redis, user_id, "still-dirty")
    return report


def _one_round(db: Database, redis: Redis, settings: Settings, graph_for: Callable[[str], GraphClient],
               user: User, lock) -> Report:
    """One round, then one ``meetings.changed`` event listing what it wrote (also when it stopped half-way:
    the pages written are not written again, so this is the only time to report them)."""
    changes = events_store.MeetingChanges()
    try:
        with events_store.one_version_bump(db):   # the weekly summaries: one write a round, after its last
            return _calendars_round(db, redis, settings, graph_for, user, lock, changes)
    finally:
        if changes and not requests.is_deleting(redis, user.id):
            outbox.meetings_changed(db, redis, user.id, changes)


def _calendars_round(db: Database, redis: Redis, settings: Settings, graph_for: Callable[[str], GraphClient],
                     user: User, lock, changes: events_store.MeetingChanges) -> Report:
    """One round over every calendar the user has turned on, with Graph's failure modes mapped to what the
    user and the queue need."""
    user_id = user.id
    graph = graph_for(user_id)
    keep = lambda: _keep(redis, lock, user_id)  # noqa: E731 - one callable, passed down to every page
    removals: events_store.Removals = {}   # what left a calendar: deleted once every calendar was read
    listed_at = None   # when this round read the calendar list: stored with the round's outcome (one write)
    try:
        keep()
        with _mailbox_wide():
            ids.ensure_immutable(db, graph, user, utcnow())   # before any request could store an immutable id
        known = calendar_store.for_user(db, user_id)   # read once a round (and once after a refresh wrote it)
        _purge_turned_off(db, user_id, known, changes)
        if _list_calendars_first(settings, user, known):
            with _mailbox_wide():
                reading = utcnow()
                refreshed = rounds.refresh_calendars(db, graph, user_id, user.email, reading, known=known,
                                                     record=False)
            listed_at = reading   # only once the list was read and written
            changes.add(refreshed.meetings)
            known = refreshed.calendars
        finished: list[tuple[Calendar, rounds.RoundResult, datetime]] = []
        cursors = True
        try:
            for calendar in known:
                result = _calendar_round(db, redis, settings, graph, calendar, keep, changes, removals) \
                    if calendar.enabled else None
                if result is not None:
                    finished.append((calendar, result, utcnow()))
        except locks.LockLost:
            cursors = False   # the new holder reads on from the cursors saved so far
            raise
        finally:
            save = cursors and bool(finished) and not requests.is_deleting(redis, user_id)
            if save:
                events_store.apply_removals(db, user_id, removals, utcnow(), changes)
            # Each calendar's outcome and (only now: a crash before this replays the removals) its cursor, in
            # one round trip.
            calendar_store.record_rounds(db, user_id, [(c.calendar_id, r.label, r.cursor, r.recheck, at)
                                                       for c, r, at in finished], save)
        results = [result for _, result, _ in finished]
    except Throttled as exc:
        delay = exc.retry_after if exc.retry_after is not None else DEFAULT_THROTTLE_SECONDS
        delay += random.uniform(0.1, 1.0 + delay / 10)  # noqa: S311 - jitter spreads the herd
        users.record_sync_failure(db, user_id, utcnow(), "throttled", f"{exc.status} {exc.code}".strip(),
                                  calendars_refreshed_at=listed_at)
        requests.defer_sync(redis, user_id, delay, "throttled")
        log.info("sync of user %s throttled; again in %.1fs", user_id, delay)
        return Report(Outcome.THROTTLED)
    except ReconnectRequired:
        users.record_sync_failure(db, user_id, utcnow(), "needs_reconnect", "reconnect required",
                                  calendars_refreshed_at=listed_at)
        return Report(Outcome.NEEDS_RECONNECT)
    except Unauthorized:
        require_reconnect(db, redis, user_id, "Graph refused a freshly refreshed token")  # mails the user once
        users.record_sync_failure(db, user_id, utcnow(), "needs_reconnect", "401 after token refresh",
                                  calendars_refreshed_at=listed_at)
        return Report(Outcome.NEEDS_RECONNECT)
    except DataDeleted:
        log.info("sync of user %s stopped: their data is being deleted", user_id)
        return Report(Outcome.SKIPPED)
    except locks.LockLost:
        log.warning("sync of user %s lost its lock mid-round; the new holder continues", user_id)
        return Report(Outcome.LOCK_LOST)
    except mailboxes.MailboxUnavailable as exc:
        if exc.__cause__ is not None and getattr(exc.__cause__, "status", 0) == 404 and _gone(graph):
            raise UserGone(user_id) from None
        mailboxes.mark(db, redis, user_id, exc.reason, utcnow())   # no retry: one check a day from now on
        users.record_sync_failure(db, user_id, utcnow(), "cannot_sync", exc.reason,
                                  calendars_refreshed_at=listed_at)
        return Report(Outcome.CANNOT_SYNC)
    except GraphError as exc:
        if exc.status == 404 and _gone(graph):
            raise UserGone(user_id) from None
        users.record_sync_failure(db, user_id, utcnow(), "error", f"{exc.status} {exc.code}".strip(),
                                  calendars_refreshed_at=listed_at)
        raise   # RQ retries with back-off (requests.SYNC_RETRY)
    done = [r for r in results if r is not None]
    label = "delta" if all(not r.full for r in done) else next(r.label for r in done if r.full)
    lag = max((r.applied.lag_seconds for r in done if r.applied.lag_seconds is not None), default=None)
    users.record_sync_success(db, user_id, utcnow(), label, lag, calendars_refreshed_at=listed_at)
    zone = rounds.infer_time_zone(db, user_id, user) if any(r.full for r in done) else None  # daily at least
    log.info("synced user %s: %s, %d calendar(s), %d pages, %d upserted, %d deleted, %d stale", user_id, label,
             len(done), sum(r.pages for r in done), sum(r.applied.upserted for r in done),
             sum(r.applied.deleted + r.removed_missing for r in done), sum(r.applied.stale for r in done))
    return Report(Outcome.OK, zone)


@contextmanager
def _mailbox_wide() -> Iterator[None]:
    """A failure of a call only a readable mailbox answers (its calendar list, translateExchangeIds) that says the
    mailbox cannot be read becomes MailboxUnavailable."""
    try:
        yield
    except GraphError as exc:
        mailboxes.raise_if_unavailable(exc, mailbox_wide=True)
        raise


class DataDeleted(locks.LockLost):
    """The user's data is being deleted: the round stops before writing another page."""


def _keep(redis: Redis, lock, user_id: str) -> None:
    if requests.is_deleting(redis, user_id):
        raise DataDeleted(user_id)
    locks.keep(lock)


def _calendar_round(db: Database, redis: Redis, settings: Settings, graph: GraphClient, calendar: Calendar,
                    keep: Callable[[], None], changes: events_store.MeetingChanges,
                    removals: events_store.Removals) -> rounds.RoundResult | None:
    """One calendar's round, then a check of the series delta may not have told all (``series``); a calendar
    Outlook deleted meanwhile (404) or one we may not read (403) is recorded and left out of this round, never
    the whole user's."""
    try:
        result = rounds.run_round(db, settings, calendar, graph, keep=keep, changes=changes, removals=removals)
        if not result.full:
            masters = result.series if result.items or not series.all_due(redis, calendar) else None
            if masters is None or masters or calendar.series_recheck:
                result.recheck = series.check(db, graph, calendar, masters, rounds.window_for(settings, utcnow()),
                                              utcnow(), removals, changes, calendar.series_recheck).recheck
    except GraphError as exc:
        mailboxes.raise_if_unavailable(exc, mailbox_wide=False)   # MailboxNotEnabledForRESTAPI, from any calendar
        if exc.status == 404 and exc.code in CALENDAR_GONE:
            log.info("a calendar of user %s is gone from Graph; refreshing the list", calendar.user_id)
            user = users.get(db, calendar.user_id)
            changes.add(rounds.refresh_calendars(db, graph, calendar.user_id, user.email if user else "").meetings)
            return None
        if exc.status == 403:
            calendar_store.record_result(db, calendar.user_id, calendar.calendar_id, utcnow(), "error",
                                         f"{exc.status} {exc.code}".strip())
            return None
        raise
    return result   # its outcome is recorded with its cursor (``record_rounds``)


def _purge_turned_off(db: Database, user_id: str, known: list[Calendar],
                      changes: events_store.MeetingChanges) -> None:
    """Delete the events of calendars the user turned off (again: a round may have written some since)."""
    for calendar in known:
        if calendar.purge_pending and not calendar.enabled:
            events_store.delete_for_calendar(db, user_id, calendar.calendar_id, changes)
            calendar_store.purged(db, user_id, calendar.calendar_id)


def _list_calendars_first(settings: Settings, user: User, known: list[Calendar]) -> bool:
    """Read the calendar list when none is known, when the last read is older than the refresh interval,
    and before any calendar starts from scratch (connect, window roll, a resync asked for)."""
    refreshed = user.sync.calendars_refreshed_at
    if refreshed is None or utcnow() - refreshed > CALENDARS_REFRESH:
        return True
    window = rounds.window_for(settings, utcnow())
    return not known or any(rounds.baseline_reason(c, window) for c in known if c.enabled)


def _gone(graph: GraphClient) -> bool:
    """Graph said 404: is /me gone too (the account no longer exists)?"""
    try:
        graph.get_json("me")
    except GraphError as exc:
        return exc.status == 404
    return False
