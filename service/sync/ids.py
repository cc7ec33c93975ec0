"""The switch of a user's stored ids to Graph's immutable ids, in place, with ``translateExchangeIds``.

Outlook's regular ids change when an item moves to another calendar ("By default, this value changes when the
item is moved from one container (such as a folder or calendar) to another"), so calsync asks for immutable
ids on every request (``service.graph``). Events stored before that carry regular ids. Delta links "are
compatible with both ID formats", so the rounds need not start over: the stored ids are translated once
(``POST /users/{id}/translateExchangeIds``, regular ``restId`` to ``restImmutableEntryId``, at most 1,000 a
call) and every place that names them follows: the events (each keeps its document, so dashboard links keep
working, and ``former_graph_id``), series references, tombstones, exclusions and prep records. An id Graph
cannot translate (the event was deleted meanwhile, or it belongs to a calendar someone shares, another
mailbox) has its calendar read again from scratch, which deletes what is gone and stores the rest anew.

Runs at the start of the user's next sync round, under their sync lock (``runner``), or from the job that
switches their subscription (``service.subscriptions.switch``), before any request with the header could
store an immutable id next to a regular one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from pymongo.database import Database

from service.graph import GraphClient, GraphError
from service.store import calendars as calendar_store
from service.store import events as events_store
from service.store import exclusions, preps, users
from service.store.records import User

log = logging.getLogger(__name__)

PATH = "users/{user_id}/translateExchangeIds"
BATCH = 1_000          # "Maximum size of this collection is 1000 strings" (user-translateexchangeids)
SOURCE, TARGET = "restId", "restImmutableEntryId"


@dataclass
class Translation:
    renamed: dict[str, str] = field(default_factory=dict)   # regular id -> immutable id
    untranslated: set[str] = field(default_factory=set)
    calls: int = 0
    resynced: set[str] = field(default_factory=set)         # calendars read again from scratch


def ensure_immutable(db: Database, graph: GraphClient, user: User, now: datetime) -> Translation | None:
    """Translate the user's stored ids once; None when they are immutable already. GraphError propagates
    (the round fails as any Graph failure would, and the next one tries again)."""
    if user.immutable_ids:
        return None
    graph_ids, masters = events_store.ids_of(db, user.id)
    wanted = sorted(graph_ids | masters)   # exclusions and prep records name only ids among these
    done = Translation()
    for start in range(0, len(wanted), BATCH):
        batch = wanted[start:start + BATCH]
        answer = graph.request("POST", PATH.format(user_id=user.id),
                               json={"inputIds": batch, "sourceIdType": SOURCE, "targetIdType": TARGET}).json()
        done.calls += 1
        _read(answer, batch, done)
    events_store.rename_ids(db, user.id, done.renamed)
    exclusions.rename_keys(db, user.id, done.renamed)
    preps.rename_ids(db, user.id, done.renamed)
    for calendar_id in events_store.calendars_holding(db, user.id, done.untranslated):
        calendar_store.clear_cursor(db, user.id, calendar_id)
        done.resynced.add(calendar_id)
    users.record_immutable_ids(db, user.id, now)
    log.info("user %s: %d stored id(s) now immutable in %d call(s); %d untranslated, %d calendar(s) resync",
             user.id, len(done.renamed), done.calls, len(done.untranslated), len(done.resynced))
    return done


def _read(answer: object, batch: list[str], done: Translation) -> None:
    """convertIdResult entries: ``targetId`` when translated, ``errorDetails`` when not; anything missing or
    odd counts as untranslated."""
    results = answer.get("value") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise GraphError(0, "malformedTranslation")
    for result in results:
        if not isinstance(result, dict):
            continue
        source, target = result.get("sourceId"), result.get("targetId")
        if source in batch and isinstance(target, str) and 0 < len(target) <= events_store.MAX_ID_LENGTH:
            done.renamed[source] = target
    done.untranslated |= set(batch) - set(done.renamed)
