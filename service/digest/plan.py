"""Each user's next digest, as an indexed instant (``digest.next_at``), so the minute tick reads only the
users who are due instead of every connected user.

``digest.next_date`` is the local date that instant sends; ``digest.last_date`` the last one handed to a
worker. Whatever changes when a digest is due (connecting, the settings page, a new time zone) calls
:func:`reschedule`; the tick moves each due user on to the following day as it enqueues them.
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


def advance(db: Database, user: User, default_time: str, now: datetime) -> date | None:
    """Take a due user's digest for the tick: move them to the following day (compare-and-set on the
    instant read, so two ticks cannot both take it). Returns the local date to send, or None when another
    tick took it, the user no longer gets digests (their schedule is cleared, so they stop being read), or
    that local day is over (the scheduler was down through it: yesterday's digest helps nobody)."""
    due_date = _date(user.digest.next_date)
    following = next_for(user, default_time, now, due_date) if eligible(user) else None
    taken = users_store.advance_digest(db, user.id, user.digest.next_at, due_date.isoformat() if due_date else None,
                                       *(following or (None, None)))
    if not taken or following is None or due_date is None or due_date.weekday() not in user.digest.days:
        return None   # (a day planned before the user left it out of their digest days is not sent)
    return due_date if due_date >= now.astimezone(days.user_zone(user)).date() else None


def backfill(db: Database, default_time: str, now: datetime | None = None) -> int:
    """Schedule users stored before ``digest.next_at`` existed (run by ``calsync init-db``)."""
    count = 0
    for user_id in users_store.without_digest_schedule(db):
        reschedule(db, user_id, default_time, now)
        count += 1
    return count
