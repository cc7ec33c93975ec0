"""Per-user sync cursors (``sync_state``) and the sync observability fields on the user document.

``sync_state`` is ``{_id: user_id, delta_link, window_start, window_end, baseline_at}``. The delta link is
written only after the last page of a round was applied, so a crash mid-round replays from the old one.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from service.store import as_utc, users

INDEXES = {"sync_state": [IndexModel([("window_start", ASCENDING)], name="window_start")]}  # the window roll


def get(db: Database, user_id: str) -> dict | None:
    state = db.sync_state.find_one({"_id": user_id})
    if state is not None:
        for name in ("window_start", "window_end", "baseline_at"):
            state[name] = as_utc(state.get(name))
    return state


def save(db: Database, user_id: str, delta_link: str, window_start: datetime, window_end: datetime,
         baseline_at: datetime) -> None:
    """Record a completed round: the cursor to continue from and the window it covers."""
    db.sync_state.update_one(
        {"_id": user_id},
        {"$set": {"delta_link": delta_link, "window_start": window_start, "window_end": window_end,
                  "baseline_at": baseline_at}},
        upsert=True,
    )


def clear(db: Database, user_id: str) -> None:
    """Forget the cursor: the next sync is a full resync."""
    db.sync_state.delete_one({"_id": user_id})


def windows_starting_before(db: Database, start: datetime) -> list[str]:
    """Ids of users whose synced window starts before ``start`` (due for the daily window roll)."""
    return [s["_id"] for s in db.sync_state.find({"window_start": {"$lt": start}}, {"_id": 1})]


# ------------------------------------------------------------------ observability on users.sync

def record_success(db: Database, user_id: str, now: datetime, result: str, lag_seconds: float | None) -> None:
    """A sync round finished: last time, result, lag (event change → stored); consecutive errors reset."""
    fields: dict = {"sync.last_sync_at": now, "sync.last_result": result, "sync.last_error": None,
                    "sync.error_count": 0, "updated_at": now}
    if lag_seconds is not None:
        fields["sync.lag_seconds"] = round(lag_seconds, 3)
    db.users.update_one({"_id": user_id}, {"$set": fields})


def record_failure(db: Database, user_id: str, now: datetime, result: str, error: str) -> None:
    """A sync round failed or was postponed; ``error`` is a short code, never a body or token."""
    db.users.update_one(
        {"_id": user_id},
        {"$set": {"sync.last_attempt_at": now, "sync.last_result": result, "sync.last_error": error[:200],
                  "updated_at": now},
         "$inc": {"sync.error_count": 1, "sync.errors_total": 1}},
    )


def stale_users(db: Database, cutoff: datetime) -> list[str]:
    """Connected users not synced since ``cutoff`` (Graph can drop notifications silently).

    Two ranges of the (connection.status, sync.last_sync_at) index: never synced, and synced before.
    """
    found = []
    for last in (None, {"$lt": cutoff}):
        query = {"connection.status": users.CONNECTED, "sync.last_sync_at": last}
        found += [u["_id"] for u in db.users.find(query, {"_id": 1}).hint(users.BY_STATUS_AND_LAST_SYNC)]
    return found
