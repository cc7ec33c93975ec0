"""When a send claim (a digest, a prep, one channel of a message) may be taken over by another attempt.

Each claim is a document with ``status`` (sending / sent / skipped / failed), ``claimed_at`` and ``holder``: the
RQ execution that took it (``service.channels.claims``), None outside a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from service.store import as_utc

SENDING = "sending"
FAILED = "failed"


def retakeable(existing: dict, now: datetime, stale: timedelta, holder: str | None = None,
               holder_alive: Callable[[str], bool] | None = None) -> bool:
    """A failed claim may be retried. One still ``sending`` may be taken over once its recorded holder is no
    longer alive (its worker died mid-send, and RQ retries the job at once), or, without a holder or a way to
    tell, once ``stale`` old."""
    if existing.get("status") == FAILED:
        return True
    if existing.get("status") != SENDING:
        return False
    claimed_at = as_utc(existing.get("claimed_at"))
    if claimed_at is None or claimed_at < now - stale:
        return True
    held_by = existing.get("holder")
    return held_by is not None and holder_alive is not None and held_by != holder and not holder_alive(held_by)
