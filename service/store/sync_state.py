"""Per-user sync cursors (``sync_state``).

``sync_state`` is ``{_id: user_id, delta_link, window_start, window_end, baseline_at}``. The delta link is
written only after the last page of a round was applied, so a crash mid-round replays from the old one.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from service.store import as_utc

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


def clear(db: Database, user_id: str) -> int:
    """Forget the cursor: the next sync is a full resync. Returns how many cursors were deleted."""
    return db.sync_state.delete_one({"_id": user_id}).deleted_count


def windows_starting_before(db: Database, start: datetime) -> list[str]:
    """Ids of users whose synced window starts before ``start`` (due for the daily window roll)."""
    return [s["_id"] for s in db.sync_state.find({"window_start": {"$lt": start}}, {"_id": 1})]
