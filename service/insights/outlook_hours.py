"""Working hours from Outlook (``mailboxSettings.workingHours``), read only when the operator turned on
``CALSYNC_OUTLOOK_WORKING_HOURS`` (calsync then asks for the delegated MailboxSettings.Read at sign-in).

A person who chose their hours on the settings page keeps them; otherwise Outlook's replace the default. Someone
who connected before the permission was asked for has not consented to it: they keep what they have, and
nothing else about their connection changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote

from pymongo.database import Database

from service.graph import GraphClient, GraphError
from service.insights.workhours import from_outlook
from service.store import users as users_store
from service.store import workhours as workhours_store

log = logging.getLogger(__name__)

PATH = "users/{user_id}/mailboxSettings/workingHours"


def refresh(db: Database, graph: GraphClient, user_id: str) -> str:
    """Read one person's Outlook working hours and store them unless they chose their own: ``stored``,
    ``chosen`` (theirs win), ``unusable`` (nothing calsync can read as working hours), ``gone`` or ``denied``."""
    user = users_store.get(db, user_id)
    if user is None or not user.connected:
        return "gone"
    try:
        body = graph.get_json(PATH.format(user_id=quote(user_id, safe="")))
    except GraphError as exc:
        if exc.status in (401, 403):
            log.info("Outlook working hours of user %s not readable (%s)", user_id, exc.status)
            return "denied"
        raise
    hours = from_outlook(body, user.time_zone)
    if hours is None:
        return "unusable"
    return "stored" if workhours_store.save_from_outlook(db, user_id, hours.as_doc()) or \
        (workhours_store.get(db, user_id) or {}).get("source") == "outlook" else "chosen"


def sweep(db: Database, enqueue: Callable[[str], object]) -> int:
    """Daily: queue a refresh for each connected person whose hours Outlook may set."""
    candidates = workhours_store.outlook_candidates(db)
    for user_id in candidates:
        enqueue(user_id)
    return len(candidates)
