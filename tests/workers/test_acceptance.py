"""Acceptance: 20 users, 2,000 random changes through the emulator, its notifications and faults.

Notifications reach calsync's real /webhooks/graph over loopback with duplicates, reordering and drops
(a dropped one is followed by a ``missed`` lifecycle notification), and a burst of 429s hits the delta
endpoint. After the queues drain, each user's stored window equals the emulator's truth field by field,
and no stored document carries a body, a location or anything else not on the list.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from rq.registry import ScheduledJobRegistry

from service.store import events
from service.workers import queues, sync
from tests.support.connect import connect_user, emulated_user

USERS = int(os.environ.get("CALSYNC_ACCEPTANCE_USERS", "20"))
OPERATIONS = int(os.environ.get("CALSYNC_ACCEPTANCE_OPERATIONS", "2000"))
ZONES = ("Pacific Standard Time", "W. Europe Standard Time", "Europe/London", "Tokyo Standard Time", "UTC")
SECRET = "SECRET-BODY hunter2"


def _ms(text: str) -> datetime:
    return datetime.fromisoformat(text.rstrip("Z")[:23]).replace(tzinfo=UTC)


def _utc(dtz: dict) -> datetime:
    assert dtz["timeZone"] == "UTC"
    return _ms(dtz["dateTime"])


def expected(item: dict) -> dict:
    """What calsync must store for a Graph event, derived here independently of the code under test."""
    return {
        "subject": item["subject"], "start": _utc(item["start"]), "end": _utc(item["end"]),
        "start_tz": item["originalStartTimeZone"], "end_tz": item["originalEndTimeZone"],
        "is_all_day": item["isAllDay"],
        "organizer": {"name": item["organizer"]["emailAddress"]["name"],
                      "email": item["organizer"]["emailAddress"]["address"].lower()},
        "attendees": [{"name": a["emailAddress"]["name"], "email": a["emailAddress"]["address"].lower(),
                       "type": a["type"], "response": a["status"]["response"]} for a in item["attendees"]],
        "is_cancelled": item["isCancelled"], "show_as": item["showAs"], "is_online_meeting": item["isOnlineMeeting"],
        "type": item["type"], "series_master_id": item["seriesMasterId"], "ical_uid": item["iCalUId"],
        "last_modified": _ms(item["lastModifiedDateTime"]), "change_key": item["changeKey"],
    }


def stored(doc: dict) -> dict:
    return {k: (v.astimezone(UTC) if isinstance(v, datetime) else v) for k, v in doc.items()
            if k not in ("_id", "user_id", "graph_id", "stored_at")}


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
            "showAs": rng.choice(("busy", "tentative", "free")), "isOnlineMeeting": rng.random() < 0.5,
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


def drain(stack, timeout: float = 30.0) -> None:
    """Run jobs until no queue has work and no sync is scheduled (throttled syncs come back later)."""
    redis = stack.runtime.redis
    scheduled = ScheduledJobRegistry(queue=queues.get_queue(queues.SYNC, redis))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.run_jobs(max_rounds=500)
        waiting = sum(queues.get_queue(name, redis).count for name in queues.ALL)
        if not waiting and not scheduled.count:
            return
        time.sleep(0.2)
    left = {name: [j.func_name for j in queues.get_queue(name, redis).get_jobs()] for name in queues.ALL}
    raise AssertionError(f"queues did not drain: {left}, scheduled syncs {scheduled.get_job_ids()}")


@pytest.mark.slow
def test_random_changes_with_mangled_notifications_and_429s_converge(stack):
    control = stack.emulator.control
    rng = random.Random(20260601)
    calendars = []
    for n in range(USERS):
        user = emulated_user(stack, mail=f"person{n}@contoso.com")
        assert connect_user(stack, user["id"]) == user["id"]
        calendars.append(Calendar(control, user, rng))
    drain(stack)
    control.set_faults(duplicate_rate=0.15, reorder_rate=0.15, drop_rate=0.05, seed=7)

    for done in range(1, OPERATIONS + 1):
        rng.choice(calendars).step()
        if done == OPERATIONS // 2:     # a burst of throttling on the delta endpoint
            control.set_faults(duplicate_rate=0.15, reorder_rate=0.15, drop_rate=0.05, rate_429=0.5,
                               retry_after="0.3", path_prefix="/me/calendarView", seed=8)
        if done == OPERATIONS // 2 + OPERATIONS // 5:
            control.set_faults(duplicate_rate=0.15, reorder_rate=0.15, drop_rate=0.05, seed=9)
        if done % 100 == 0:
            control.wait_idle(timeout=30)
            drain(stack)
    control.clear_faults()
    control.wait_idle(timeout=30)
    drain(stack)

    window = sync.window_for(stack.settings, datetime.now(UTC))
    start, end = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in window)
    total = 0
    for calendar in calendars:
        user_id = calendar.user["id"]
        truth = {item["id"]: expected(item) for item in control.calendar(user_id, start, end)}
        mine = {doc["graph_id"]: stored(doc) for doc in stack.runtime.db.events.find({"user_id": user_id})}
        assert mine.keys() == truth.keys(), calendar.user["mail"]
        for graph_id, want in truth.items():
            assert mine[graph_id] == want, (calendar.user["mail"], graph_id)
        total += len(truth)
    assert total > USERS * 10
    for doc in stack.runtime.db.events.find({}):
        assert set(doc) <= events.STORED_FIELDS
        assert "SECRET" not in repr(doc) and "Secret room" not in repr(doc)
