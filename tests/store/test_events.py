"""The write side of the events store: whitelist, order guard, replays, deletions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.store import events
from tests.support.mailboxes import Mailboxes

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def graph_event(mailboxes: Mailboxes):
    """graph_event(**changes) → an event as Graph answers it (the emulator, read back as its organizer), with
    a body, an attachment and attendees whose addresses are not in lower case."""
    u1 = mailboxes.add("u1")
    made = 0

    def make(**changes) -> dict:
        nonlocal made
        made += 1
        start = (NOW + timedelta(days=1, minutes=made)).astimezone(ZoneInfo("America/Los_Angeles"))
        event_id = mailboxes.control.create_event(u1["id"], {
            "subject": "Planning", "body": {"contentType": "text", "content": "SECRET agenda"},
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "Pacific Standard Time"},
            "end": {"dateTime": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "Pacific Standard Time"},
            "attendees": [{"emailAddress": {"name": f"Person {n}", "address": f"Person{n}@Example.COM"},
                           "type": "required"} for n in range(2)]})["id"]
        if changes:
            mailboxes.control.update_event(u1["id"], event_id, changes)
        return mailboxes.client(u1["id"]).get_json(f"users/{u1['id']}/events/{event_id}")

    return make


def test_only_whitelisted_fields_are_stored_and_no_body_text_survives(db, graph_event):
    item = graph_event()
    item["attachments"] = [{"contentBytes": "SECRET"}]

    events.apply_changes(db, "u1", [item], NOW)

    stored = db.events.find_one({"graph_id": item["id"]})
    assert set(stored) <= events.STORED_FIELDS
    assert "SECRET" not in repr(stored) and "secret" not in repr(stored).lower()
    assert stored["organizer"] == {"name": "U1", "email": "u1@contoso.example"}
    assert all(a["email"] == a["email"].lower() and a["response"] for a in stored["attendees"])
    assert stored["start_tz"] == "Pacific Standard Time" and stored["start"].tzinfo is not None


def test_an_older_last_modified_never_overwrites_a_newer_one(db, graph_event):
    old = graph_event(subject="old")
    new = dict(old, subject="new", lastModifiedDateTime="2099-01-01T00:00:00.0000000Z", changeKey="k2")

    events.apply_changes(db, "u1", [new], NOW)
    result = events.apply_changes(db, "u1", [old], NOW)

    assert result.stale == 1 and result.upserted == 0
    assert events.get(db, "u1", old["id"])["subject"] == "new"


def test_replaying_the_same_page_changes_nothing(db, graph_event):
    items = [graph_event(subject=f"s{i}") for i in range(3)]
    events.apply_changes(db, "u1", items, NOW)
    before = list(db.events.find({}, {"_id": 0}))

    again = events.apply_changes(db, "u1", items, NOW + timedelta(minutes=5))

    assert again.upserted == 0 and again.stale == 3
    assert list(db.events.find({}, {"_id": 0})) == before


def test_removed_items_delete_and_a_replayed_older_upsert_does_not_resurrect(db, graph_event):
    item = graph_event()
    events.apply_changes(db, "u1", [item], NOW)

    deleted = events.apply_changes(db, "u1", [{"id": item["id"], "@removed": {"reason": "deleted"}}], NOW)
    replay = events.apply_changes(db, "u1", [item], NOW)

    assert deleted.deleted == 1 and replay.stale == 1
    assert events.get(db, "u1", item["id"]) is None


def test_a_newer_version_after_removal_comes_back(db, graph_event):
    item = graph_event()
    events.apply_changes(db, "u1", [item, {"id": item["id"], "@removed": {"reason": "deleted"}}], NOW)

    newer = dict(item, lastModifiedDateTime="2099-01-01T00:00:00.0000000Z", changeKey="moved-back")
    result = events.apply_changes(db, "u1", [newer], NOW)

    assert result.upserted == 1 and events.get(db, "u1", item["id"])["change_key"] == "moved-back"


def test_a_partial_item_does_not_blank_stored_fields(db, graph_event):
    item = graph_event()
    events.apply_changes(db, "u1", [item], NOW)

    partial = {"id": item["id"], "subject": "renamed", "lastModifiedDateTime": "2099-01-01T00:00:00Z"}
    events.apply_changes(db, "u1", [partial], NOW)

    stored = events.get(db, "u1", item["id"])
    assert stored["subject"] == "renamed" and stored["attendees"] and stored["start"]


def test_users_are_isolated_by_the_unique_user_graph_id_key(db, graph_event):
    item = graph_event()

    events.apply_changes(db, "u1", [item], NOW)
    events.apply_changes(db, "u2", [item], NOW)

    assert db.events.count_documents({"graph_id": item["id"]}) == 2


def test_junk_items_are_counted_not_crashed_on(db):
    junk = [None, 3, "x", {}, {"id": 5}, {"id": "x" * 5000}, {"id": "no-time", "start": "nope"},
            {"id": "ok", "attendees": "no", "organizer": [], "lastModifiedDateTime": 7}]

    result = events.apply_changes(db, "u1", junk, NOW)

    assert result.invalid == 7 and result.upserted == 1   # a start that is not a time: skipped, not stored timeless
    assert set(events.get(db, "u1", "ok")) <= events.STORED_FIELDS and events.get(db, "u1", "no-time") is None


def test_local_wall_times_are_converted_to_utc():
    value = {"dateTime": "2026-07-01T09:00:00.0000000", "timeZone": "Pacific Standard Time"}

    start = events.parse_date_time_zone(value)

    assert start == datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
