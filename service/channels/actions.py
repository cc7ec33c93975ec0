"""A button pressed in a Teams card or a Slack DM: "exclude this meeting", "not useful", "stop these".

The person is whoever the platform vouched for (a verified Bot Framework token's activity, a signed Slack
request), never a field of the button; the button only names a meeting or a tip, and a meeting must be
theirs. Anything else is refused with a reason, and nothing changes.
"""

from __future__ import annotations

import logging

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.database import Database

from service.store import channels as store
from service.store import coaching as coaching_store
from service.store import exclusions

log = logging.getLogger(__name__)

EXCLUDE, NOT_USEFUL, STOP = "exclude", "not_useful", "stop"


class Refused(ValueError):
    """A button calsync will not act on; the message is safe to show."""


def apply(db: Database, user_id: str, channel: str, data: object) -> str:
    """Act on a pressed button for ``user_id``; returns what was done, in words."""
    if not isinstance(data, dict) or not isinstance(data.get("action"), str):
        raise Refused("unknown button")
    action = data["action"]
    if action == EXCLUDE:
        return _exclude(db, user_id, data.get("meeting"))
    if action == NOT_USEFUL:
        tip, person = data.get("tip"), data.get("person")
        if not isinstance(tip, str) or not tip or len(tip) > 200 or not (person is None or isinstance(person, str)):
            raise Refused("unknown tip")
        coaching_store.record_feedback(db, user_id, tip, person, coaching_store.NOT_USEFUL)
        return "Thanks: calsync will not show that tip again."
    if action == STOP:
        kind = data.get("kind")
        if kind not in store.KINDS:
            raise Refused("unknown message type")
        return _stop(db, user_id, channel, kind)
    raise Refused("unknown button")


def _exclude(db: Database, user_id: str, key: object) -> str:
    try:
        event = db.events.find_one({"_id": ObjectId(key)}) if isinstance(key, str) else None
    except InvalidId:
        event = None
    if event is None or event.get("user_id") != user_id:
        log.info("a %s button from user %s named a meeting that is not theirs", EXCLUDE, user_id)
        raise Refused("that meeting is not in your calendar")
    exclusions.add(db, user_id, exclusions.MEETING, event.get("ical_uid") or event["graph_id"])
    return "Done: this meeting is kept out of your insights."


def _stop(db: Database, user_id: str, channel: str, kind: str) -> str:
    chosen = [c for c in store.choice(db, user_id).get(kind, [store.EMAIL]) if c != channel] or [store.EMAIL]
    store.set_choice(db, user_id, {kind: chosen})
    where = " and ".join(chosen)
    return f"Done: these no longer come here (they go by {where}; change it in your settings)."
