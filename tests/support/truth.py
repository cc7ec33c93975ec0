"""Compare stored events with the fake Graph's truth, field by field, computed independently of the code."""

from __future__ import annotations

from datetime import datetime

from service.store import as_utc, events
from service.sync import rounds

FIELDS = ("subject", "start", "end", "start_tz", "end_tz", "is_all_day", "organizer", "attendees", "is_cancelled",
          "show_as", "is_online_meeting", "type", "series_master_id", "ical_uid", "last_modified", "change_key")


def _ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def expected(e: dict) -> dict:
    return {
        "subject": e["subject"], "start": _ms(e["start"]), "end": _ms(e["end"]), "start_tz": e["tz"],
        "end_tz": e["tz"], "is_all_day": e["is_all_day"],
        "organizer": {"name": e["organizer"][0], "email": e["organizer"][1].lower()},
        "attendees": [{"name": n, "email": a.lower(), "type": t, "response": r} for n, a, t, r in e["attendees"]],
        "is_cancelled": e["is_cancelled"], "show_as": e["show_as"], "is_online_meeting": e["is_online_meeting"],
        "type": e["type"], "series_master_id": e["series_master_id"], "ical_uid": e["ical_uid"],
        "last_modified": _ms(e["last_modified"]), "change_key": e["change_key"],
    }


def differences(rt, fake, user_id: str) -> list[str]:
    """Every way the stored window differs from the truth (empty when they agree); also checks stripping."""
    start, end = rounds.window_for(rt.settings, datetime.now(tz=start_tz()))
    with fake.lock:
        truth = {e["id"]: expected(e) for e in fake.users[user_id].events.values()
                 if e["start"] < end and e["end"] > start}
    stored = {d["graph_id"]: d for d in rt.db.events.find({"user_id": user_id})}
    problems = [f"missing {i[-8:]}" for i in truth.keys() - stored.keys()]
    problems += [f"extra {i[-8:]}" for i in stored.keys() - truth.keys()]
    for graph_id in truth.keys() & stored.keys():
        doc = stored[graph_id]
        extra = set(doc) - events.STORED_FIELDS
        if extra:
            problems.append(f"unexpected fields {sorted(extra)}")
        for name in FIELDS:
            got = as_utc(doc.get(name)) if isinstance(doc.get(name), datetime) else doc.get(name)
            if got != truth[graph_id][name]:
                problems.append(f"{graph_id[-8:]}.{name}: {got!r} != {truth[graph_id][name]!r}")
    return problems


def no_secret_anywhere(rt) -> bool:
    text = repr(list(rt.db.events.find({})))
    return not any(word in text for word in ("SECRET", "hunter2", "secret building", "teams.example"))


def start_tz():
    from datetime import UTC

    return UTC
