"""Each user's next digest, as an indexed instant (``digest.next_at``), so the minute tick reads only the
users who are due instead of every connected user.

``digest.next_date`` is the local date that instant sends; ``digest.last_date`` the last one handed to a
worker. Whatever changes when a digest is due (connecting, the settings page, a new time zone) calls
:func:`reschedule`; the tick queues each due user's digest, then moves them on to the following day.
"""

from __future__ import annotations

from datetime import date, datetime

from pymongo.database import Database

from service.digest import schedule
from service.insights import days
from service.store import users as users_store
from service.store import utcnow
from service.store.records import User


def eligible(user: User) -> bool:
    """Connected with the digest on: only then does the user have a next digest."""
    return user.connected and user.digest.enabled


def next_for(user: User, default_time: str, now: datetime, last_date: date | None) -> tuple[date, datetime] | None:
    """(local date, UTC instant) of the user's next digest after ``last_date``, or None if they get none."""
    if not eligible(user):
        return None
    return schedule.next_send(days.user_zone(user), schedule.send_time(user, default_time), now, last_date,
                              user.digest.days)


def _date(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def reschedule(db: Database, user_id: str, default_time: str, now: datetime | None = None) -> datetime | None:
    """Recompute a user's next digest from their current settings; returns its instant (None: none)."""
    user = users_store.get(db, user_id)
    if user is None:
        return None
    planned = next_for(user, default_time, now or utcnow(), _date(user.digest.last_date))
    users_store.set_next_digest(db, user_id, *(planned or (None, None)))
    return planned[1] if planned else None


def sendable(user: User, default_time: str, now: datetime) -> date | None:
    """The local date a due user's digest sends, or None: they no longer get digests, it is a day planned
    before they left it out of their digest days, or that local day is over (the scheduler was down through it:
    yesterday's digest helps nobody). Reads only ``user``."""
    due_date = _date(user.digest.next_date)
    if next_for(user, default_time, now, due_date) is None or due_date is None \
            or due_date.weekday() not in user.digest.days:
        return None
    return due_date if due_date >= now.astimezone(days.user_zone(user)).date() else None


def advance(db: Database, user: User, default_time: str, now: datetime) -> bool:
    """Move a due user on to their following digest (none, if they no longer get digests: they stop being
    read). A compare-and-set on the instant read: False when another tick moved them first."""
    due_date = _date(user.digest.next_date)
    following = next_for(user, default_time, now, due_date)
    return users_store.advance_digest(db, user.id, user.digest.next_at, due_date.isoformat() if due_date else None,
                                      *(following or (None, None)))


def backfill(db: Database, default_time: str, now: datetime | None = None) -> int:
    """Schedule users stored before ``digest.next_at`` existed (run by ``calsync init-db``)."""
    count = 0
    for user_id in users_store.without_digest_schedule(db):
        reschedule(db, user_id, default_time, now)
        count += 1
    return count
