"""Random Graph-shaped calendar changes through the emulator's control API, and the truth they must give.

``expected(item)`` is what calsync must store for an emulator event, derived independently of the code
under test; ``stored(doc)`` is a stored event in the same shape.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

ZONES = ("Pacific Standard Time", "W. Europe Standard Time", "Europe/London", "Tokyo Standard Time", "UTC")
SECRET = "SECRET-BODY hunter2"


def _ms(text: str) -> datetime:
    return datetime.fromisoformat(text.rstrip("Z")[:23]).replace(tzinfo=UTC)


def _utc(dtz: dict) -> datetime:
    assert dtz["timeZone"] == "UTC"
    return _ms(dtz["dateTime"])


def expected(item: dict) -> dict:
    """What calsync must store for a Graph event, derived here independently of the code under test."""
    private = item.get("sensitivity") in ("private", "confidential")
    return {
        "subject": None if private else item["subject"], "sensitivity": item.get("sensitivity"),
        "start": _utc(item["start"]), "end": _utc(item["end"]),
        "start_tz": item["originalStartTimeZone"], "end_tz": item["originalEndTimeZone"],
        "is_all_day": item["isAllDay"],
        "organizer": {"name": item["organizer"]["emailAddress"]["name"],
                      "email": item["organizer"]["emailAddress"]["address"].lower()},
        "attendees": [{"name": a["emailAddress"]["name"], "email": a["emailAddress"]["address"].lower(),
                       "type": a["type"], "response": a["status"]["response"]} for a in item["attendees"]],
        "is_cancelled": item["isCancelled"], "show_as": item["showAs"], "is_online_meeting": item["isOnlineMeeting"],
        "type": item["type"], "series_master_id": item["seriesMasterId"], "ical_uid": item["iCalUId"],
        "last_modified": _ms(item["lastModifiedDateTime"]), "change_key": item["changeKey"],
        "response": item["responseStatus"]["response"], "hide_attendees": item.get("hideAttendees", False),
    }


def stored(doc: dict) -> dict:
    return {k: (v.astimezone(UTC) if isinstance(v, datetime) else v) for k, v in doc.items()
            if k not in ("_id", "user_id", "graph_id", "stored_at", "calendar_id")}  # calendars: own tests


class Calendar:
    """Random Graph-shaped changes for one emulated user, remembering ids it can update or delete."""

    def __init__(self, control, user: dict, rng: random.Random):
        self.control, self.user, self.rng = control, user, rng
        self.ids: list[str] = []

    def event_body(self) -> dict:
        rng = self.rng
        zone = rng.choice(ZONES)
        start = datetime.now(UTC) + timedelta(days=rng.uniform(-9, 38))
        start = start.replace(minute=rng.choice((0, 15, 30, 45)), second=0, microsecond=0)
        local = start.strftime("%Y-%m-%dT%H:%M:%S")
        end = (start + timedelta(minutes=rng.choice((15, 30, 60, 90)))).strftime("%Y-%m-%dT%H:%M:%S")
        return {
            "subject": f"Topic {rng.randrange(10_000)}",
            "body": {"contentType": "html", "content": f"<p>{SECRET}</p>"},
            "location": {"displayName": "Secret room 7"},
            "start": {"dateTime": local, "timeZone": zone}, "end": {"dateTime": end, "timeZone": zone},
            "showAs": rng.choice(("busy", "tentative", "free")),
            "sensitivity": "private" if rng.random() < 0.1 else "normal", "isOnlineMeeting": rng.random() < 0.5,
            "attendees": [{"emailAddress": {"address": f"Guest{rng.randrange(50)}@Fabrikam.example",
                                            "name": f"Guest {n}"}, "type": rng.choice(("required", "optional")),
                           "status": {"response": rng.choice(("none", "accepted", "declined"))}}
                          for n in range(rng.randrange(0, 4))],
        }

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.35 or len(self.ids) < 3:
            self.ids.append(self.control.create_event(self.user["id"], self.event_body())["id"])
        elif roll < 0.45:
            body = self.event_body() | {"recurrence": {
                "pattern": {"type": self.rng.choice(("daily", "weekly")), "interval": 1},
                "range": {"type": "numbered", "numberOfOccurrences": self.rng.randrange(2, 8)}}}
            self.ids.append(self.control.create_event(self.user["id"], body)["id"])
        elif roll < 0.8:
            moved = self.event_body()
            changes = self.rng.choice((
                {"subject": f"Renamed {self.rng.randrange(10_000)}"},
                {"isCancelled": True}, {"showAs": "oof"},
                {"start": moved["start"], "end": moved["end"]},
                {"attendees": moved["attendees"]},
            ))
            self.control.update_event(self.user["id"], self.rng.choice(self.ids), changes)
        else:
            self.control.delete_event(self.user["id"], self.ids.pop(self.rng.randrange(len(self.ids))))
