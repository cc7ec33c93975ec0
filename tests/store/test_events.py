"""The write side of the events store: whitelist, order guard, replays, deletions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.store import events
from tests.support.fakegraph import FakeGraph

NOW = datetime.now(UTC).replace(microsecond=0)


def graph_event(fake: FakeGraph, user_id: str = "u1", **changes) -> dict:
    if user_id not in fake.users:
        fake.add_user(user_id, f"{user_id}@contoso.example")
    event_id = fake.create(user_id, NOW + timedelta(days=1))
    if changes:
        fake.update(user_id, event_id, **changes)
    return fake.render(fake.users[user_id], fake.users[user_id].events[event_id])


def test_only_whitelisted_fields_are_stored_and_no_body_text_survives(db):
    item = graph_event(FakeGraph())
    item["attachments"] = [{"contentBytes": "SECRET"}]

    events.apply_changes(db, "u1", [item], NOW)

    stored = db.events.find_one({"graph_id": item["id"]})
    assert set(stored) <= events.STORED_FIELDS
    assert "SECRET" not in repr(stored) and "secret" not in repr(stored).lower()
    assert stored["organizer"] == {"name": "U1", "email": "u1@contoso.example"}
    assert all(a["email"] == a["email"].lower() and a["response"] for a in stored["attendees"])
    assert stored["start_tz"] == "Pacific Standard Time" and stored["start"].tzinfo is not None


def test_an_older_last_modified_never_overwrites_a_newer_one(db):
    fake = FakeGraph()
    old = graph_event(fake, subject="old")
    new = dict(old, subject="new", lastModifiedDateTime="2099-01-01T00:00:00.0000000Z", changeKey="k2")

    events.apply_changes(db, "u1", [new], NOW)
    result = events.apply_changes(db, "u1", [old], NOW)

    assert result.stale == 1 and result.upserted == 0
    assert events.get(db, "u1", old["id"])["subject"] == "new"


def test_replaying_the_same_page_changes_nothing(db):
    items = [graph_event(FakeGraph(), subject=f"s{i}") for i in range(3)]
    events.apply_changes(db, "u1", items, NOW)
    before = list(db.events.find({}, {"_id": 0}))

    again = events.apply_changes(db, "u1", items, NOW + timedelta(minutes=5))

    assert again.upserted == 0 and again.stale == 3
    assert list(db.events.find({}, {"_id": 0})) == before


def test_removed_items_delete_and_a_replayed_older_upsert_does_not_resurrect(db):
    item = graph_event(FakeGraph())
    events.apply_changes(db, "u1", [item], NOW)

    deleted = events.apply_changes(db, "u1", [{"id": item["id"], "@removed": {"reason": "deleted"}}], NOW)
    replay = events.apply_changes(db, "u1", [item], NOW)

    assert deleted.deleted == 1 and replay.stale == 1
    assert events.get(db, "u1", item["id"]) is None


def test_a_newer_version_after_removal_comes_back(db):
    item = graph_event(FakeGraph())
    events.apply_changes(db, "u1", [item, {"id": item["id"], "@removed": {"reason": "deleted"}}], NOW)

    newer = dict(item, lastModifiedDateTime="2099-01-01T00:00:00.0000000Z", changeKey="moved-back")
    result = events.apply_changes(db, "u1", [newer], NOW)

    assert result.upserted == 1 and events.get(db, "u1", item["id"])["change_key"] == "moved-back"


def test_a_partial_item_does_not_blank_stored_fields(db):
    item = graph_event(FakeGraph())
    events.apply_changes(db, "u1", [item], NOW)

    partial = {"id": item["id"], "subject": "renamed", "lastModifiedDateTime": "2099-01-01T00:00:00Z"}
    events.apply_changes(db, "u1", [partial], NOW)

    stored = events.get(db, "u1", item["id"])
    assert stored["subject"] == "renamed" and stored["attendees"] and stored["start"]


def test_users_are_isolated_by_the_unique_user_graph_id_key(db):
    item = graph_event(FakeGraph())

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
